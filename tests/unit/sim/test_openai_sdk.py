"""The official ``openai`` SDK against the sim's plain ``/v1`` (in-process over its own httpx2)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import openai
import pytest

from codexpool_sim.accounts import Account
from codexpool_sim.app import SimApp
from codexpool_sim.server import RunningSim


@pytest.fixture
async def sdk(app: SimApp, account: Account) -> AsyncIterator[openai.AsyncOpenAI]:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app))
    async with openai.AsyncOpenAI(
        api_key=account.tokens.access_token, base_url="http://sim/v1", http_client=http
    ) as client:
        yield client


async def test_streaming_reads_text_and_usage(sdk: openai.AsyncOpenAI) -> None:
    deltas: list[str] = []
    async with sdk.responses.stream(model="gpt-5-codex", input="hello") as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert deltas == ["Hello", " world"]
    assert final.output_text == "Hello world"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (
        1234,
        56,
        1290,
    )
    assert final.usage.input_tokens_details.cached_tokens == 1024
    assert final.usage.output_tokens_details.reasoning_tokens == 32


async def test_non_streaming_reads_text_and_usage(
    sdk: openai.AsyncOpenAI, app: SimApp, account: Account
) -> None:
    app.sim.accounts[account.account_id].style.response_text = "Four little words here"
    response = await sdk.responses.create(model="gpt-5-codex", input="hello")
    assert response.status == "completed"
    assert response.output_text == "Four little words here"
    assert response.usage is not None and response.usage.total_tokens == 1290
    assert [item.type for item in response.output] == ["reasoning", "message"]


async def test_raw_stream_events_arrive_in_transcript_order(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.responses.create(model="gpt-5-codex", input="hello", stream=True)
    kinds = [event.type async for event in stream]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


async def test_function_call_item_streams_through_the_sdk(
    sdk: openai.AsyncOpenAI, account: Account
) -> None:
    account.style.function_call = True
    async with sdk.responses.stream(model="gpt-5-codex", input="list files") as stream:
        final = await stream.get_final_response()
    call = final.output[-1]
    assert call.type == "function_call"
    assert call.name == "shell" and call.arguments == '{"command":["ls","-la"]}'


async def test_sdk_over_a_real_server(served: RunningSim, account: Account) -> None:
    async with openai.AsyncOpenAI(
        api_key=account.tokens.access_token, base_url=f"{served.base_url}/v1"
    ) as client:
        async with client.responses.stream(model="gpt-5-codex", input="hello") as stream:
            final = await stream.get_final_response()
        unary = await client.responses.create(model="gpt-5-codex", input="hello")
    assert final.output_text == unary.output_text == "Hello world"


async def test_sdk_sees_an_unknown_key_as_authentication_error(app: SimApp) -> None:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app))
    async with openai.AsyncOpenAI(
        api_key="sk-nope", base_url="http://sim/v1", http_client=http, max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.responses.create(model="gpt-5-codex", input="hello")
    assert caught.value.code == "token_invalidated"
