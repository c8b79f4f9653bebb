"""``POST /v1/chat/completions`` and the compaction routes through real routers and codex-sim."""

from __future__ import annotations

import json

import httpx
import openai

from tests.e2e.router.conftest import Pool, Sim

TOOLS: list[openai.types.chat.ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "shell",
            "description": "Run a command",
            "parameters": {"type": "object", "properties": {"command": {"type": "array"}}},
        },
    }
]
MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "list the files"},
]


async def test_openai_sdk_chat_completions_with_a_tool_call(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2])
    for n in (1, 2):
        sim.patch(n, function_call=True)
    [router] = routers(1)
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=pool.api_key, max_retries=0)
    answer = await sdk.chat.completions.create(model="gpt-5-codex", messages=MESSAGES, tools=TOOLS)
    [choice] = answer.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Hello world"
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "shell"
    assert json.loads(call.function.arguments) == {"command": ["ls", "-la"]}
    assert answer.usage is not None and answer.usage.total_tokens == 1290
    assert answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 1024

    stream = await sdk.chat.completions.create(
        model="gpt-5-codex",
        messages=MESSAGES,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, arguments, finish, usage, names = "", "", None, None, []
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        usage = chunk.usage or usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
            for delta in c.delta.tool_calls or ():
                assert delta.index == 0
                if delta.function and delta.function.name:
                    names.append(delta.function.name)
                arguments += (delta.function.arguments or "") if delta.function else ""
    assert (text, names, finish) == ("Hello world", ["shell"], "tool_calls")
    assert json.loads(arguments) == {"command": ["ls", "-la"]}
    assert usage is not None and usage.completion_tokens == 56

    # The tool's answer goes back as a tool message: the backend sees a function_call_output.
    await sdk.chat.completions.create(
        model="gpt-5-codex",
        messages=[
            *MESSAGES,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {
                            "name": call.function.name,
                            "arguments": call.function.arguments,
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "a.txt"},
        ],
        tools=TOOLS,
    )
    sent = sim.requests()[-1]["body"]
    assert sent["instructions"] == "You are terse."
    assert sent["store"] is False and sent["stream"] is True
    assert sent["input"][-1] == {
        "type": "function_call_output",
        "call_id": call.id,
        "output": "a.txt",
    }
    assert sent["tools"][0]["name"] == "shell"

    try:
        await sdk.chat.completions.create(model="gpt-5-codex", messages=MESSAGES, max_tokens=5)
    except openai.BadRequestError as error:
        assert error.code == "unsupported_parameter" and error.param == "max_tokens"
    else:
        raise AssertionError("max_tokens was accepted")
    await sdk.close()


async def test_chat_with_a_failing_account_still_answers_every_request(
    sim: Sim, pool: Pool, routers
) -> None:
    await pool.setup(sim, [1, 2])
    sim.fault(1, kind="http_error", status=500, count=1000)
    [router] = routers(1)
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=pool.api_key, max_retries=0)
    for stream in (False, True) * 5:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="gpt-5-codex", messages=MESSAGES, stream=stream
        )
        assert raw.headers["x-codexpool-provider"] == "account-2"
        answer = raw.parse()
        if isinstance(answer, openai.AsyncStream):
            text = ""
            async for chunk in answer:
                text += "".join(c.delta.content or "" for c in chunk.choices)
        else:
            text = answer.choices[0].message.content or ""
        assert text == "Hello world"
    await sdk.close()


async def test_compaction_is_proxied_on_both_routes(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2])
    sim.fault(1, kind="http_error", status=502, count=1)
    [router] = routers(1)
    history = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]
    body = {"model": "gpt-5-codex", "instructions": "Compact.", "input": history}
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:
        for path in ("/backend-api/codex/responses/compact", "/v1/responses/compact"):
            response = await c.post(path, json=body)
            assert response.status_code == 200, response.text
            doc = response.json()
            assert doc["object"] == "response.compaction"
            assert doc["output"][-1]["type"] == "compaction"
            assert response.headers["x-codexpool-provider"] in ("account-1", "account-2")
    sent = sim.requests("/backend-api/codex/responses/compact")
    assert len(sent) == 3  # the 502, its failover, the second route
    assert all("stream" not in r["body"] and r["body"]["input"] == history for r in sent)
    assert all(r["headers"]["accept"] == "application/json" for r in sent)
