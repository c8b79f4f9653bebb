"""Every fault kind, injected through the admin endpoint and observed by a client."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from codexpool_sim.accounts import Account
from codexpool_sim.app import SimApp
from codexpool_sim.tokens import CLIENT_ID
from tests.unit.sim.helpers import codex_body, codex_headers, sse_events

URL = "/backend-api/codex/responses"


async def inject(client: httpx.AsyncClient, account: Account, **spec: Any) -> dict[str, Any]:
    response = await client.post(f"/_sim/accounts/{account.account_id}/faults", json=spec)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def call(client: httpx.AsyncClient, account: Account, **body: Any) -> httpx.Response:
    return await client.post(URL, headers=codex_headers(account), json=codex_body(**body))


async def test_http_error_with_overload_body_for_count_requests(
    client: httpx.AsyncClient, account: Account
) -> None:
    await inject(client, account, kind="http_error", status=503, count=2)
    for _ in range(2):
        failed = await call(client, account)
        assert failed.status_code == 503
        assert failed.json() == {
            "error": {
                "type": "service_unavailable_error",
                "code": "server_is_overloaded",
                "message": "Our servers are currently overloaded. Please try again later.",
            }
        }
    assert (await call(client, account)).status_code == 200
    assert account.quota.primary.used_percent == account.quota.primary_cost


async def test_http_error_code_and_message_are_settable(
    client: httpx.AsyncClient, account: Account
) -> None:
    await inject(
        client, account, kind="http_error", status=500, code="internal_error", message="boom"
    )
    failed = await call(client, account)
    assert failed.status_code == 500
    assert failed.json()["error"] == {
        "type": "service_unavailable_error",
        "code": "internal_error",
        "message": "boom",
    }


async def test_rate_limit_with_retry_after(client: httpx.AsyncClient, account: Account) -> None:
    await inject(client, account, kind="rate_limit", retry_after_s=7)
    limited = await call(client, account)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert "try again in 7s" in limited.json()["error"]["message"]
    assert (await call(client, account)).status_code == 200


async def test_usage_limit_fault_answers_like_an_exhausted_account(
    client: httpx.AsyncClient, account: Account
) -> None:
    await inject(client, account, kind="usage_limit")
    limited = await call(client, account)
    assert limited.status_code == 429
    assert limited.headers["x-codex-primary-used-percent"] == "100"
    error = limited.json()["error"]
    assert error["type"] == "usage_limit_reached"
    assert error["resets_at"] == int(limited.headers["x-codex-primary-reset-at"])
    assert error["resets_in_seconds"] == int(limited.headers["x-codex-primary-reset-after-seconds"])
    after = await call(client, account)
    assert after.headers["x-codex-primary-used-percent"] == "0.5"


async def test_token_expired_fault_is_a_401(client: httpx.AsyncClient, account: Account) -> None:
    await inject(client, account, kind="token_expired")
    expired = await call(client, account)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "token_expired"
    assert (await call(client, account)).status_code == 200


async def test_cloudflare_403_is_html(client: httpx.AsyncClient, account: Account) -> None:
    await inject(client, account, kind="cloudflare_403")
    blocked = await call(client, account)
    assert blocked.status_code == 403
    assert blocked.headers["content-type"].startswith("text/html")
    assert "Cloudflare" in blocked.text and "blocked" in blocked.text


async def test_response_failed_with_any_code(client: httpx.AsyncClient, account: Account) -> None:
    message = "Rate limit reached for gpt-5-codex. Please try again in 1.5s."
    await inject(
        client, account, kind="response_failed", code="rate_limit_exceeded", message=message
    )
    response = await call(client, account)
    events = sse_events(response.text)
    assert [e["type"] for e in events] == ["response.created", "response.failed"]
    failure = events[1]["response"]
    assert failure["status"] == "failed"
    assert failure["error"] == {"code": "rate_limit_exceeded", "message": message}
    assert failure["id"] == events[0]["response"]["id"]


async def test_error_event_ends_the_stream_without_completed(
    client: httpx.AsyncClient, account: Account
) -> None:
    await inject(
        client, account, kind="error_event", code="server_is_overloaded", message="at capacity"
    )
    events = sse_events((await call(client, account)).text)
    assert [e["type"] for e in events] == ["response.created", "error"]
    assert events[1]["error"] == {
        "type": "server_error",
        "code": "server_is_overloaded",
        "message": "at capacity",
    }


async def test_response_failed_without_streaming(
    client: httpx.AsyncClient, account: Account
) -> None:
    await inject(client, account, kind="response_failed", code="context_length_exceeded")
    document = (await call(client, account, stream=False)).json()
    assert document["status"] == "failed"
    assert document["error"]["code"] == "context_length_exceeded"


async def test_response_incomplete(client: httpx.AsyncClient, account: Account) -> None:
    await inject(client, account, kind="response_incomplete", reason="content_filter")
    events = sse_events((await call(client, account)).text)
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "content_filter"}
    assert not any(e["type"] == "response.completed" for e in events)


async def test_empty_output_on_the_openai_route(
    client: httpx.AsyncClient, account: Account
) -> None:
    headers = {"authorization": f"Bearer {account.tokens.access_token}"}
    body = {"model": "gpt-5-codex", "input": "hi", "stream": True}
    full = sse_events((await client.post("/v1/responses", headers=headers, json=body)).text)[-1]
    assert len(full["response"]["output"]) == 2
    await inject(client, account, kind="empty_output")
    events = sse_events((await client.post("/v1/responses", headers=headers, json=body)).text)
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"] == []
    assert any(e["type"] == "response.output_item.done" for e in events)


async def test_cut_stream_drops_the_connection(live: httpx.AsyncClient, account: Account) -> None:
    await inject(live, account, kind="cut_stream", after_events=4)
    seen: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with live.stream(
            "POST", URL, headers=codex_headers(account), json=codex_body()
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    seen.append(line[7:])
    assert len(seen) == 4 and "response.completed" not in seen
    assert (await call(live, account)).status_code == 200


async def test_stall_headers_until_the_client_gives_up(
    live: httpx.AsyncClient, account: Account
) -> None:
    await inject(live, account, kind="stall_headers", duration_ms=60_000)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await live.post(URL, headers=codex_headers(account), json=codex_body(), timeout=0.3)
    assert time.monotonic() - started < 5
    assert (await call(live, account)).status_code == 200


async def test_short_stall_headers_then_a_normal_answer(
    live: httpx.AsyncClient, account: Account
) -> None:
    await inject(live, account, kind="stall_headers", duration_ms=60)
    started = time.monotonic()
    response = await call(live, account)
    assert time.monotonic() - started >= 0.06
    assert sse_events(response.text)[-1]["type"] == "response.completed"


async def test_stall_stream_after_some_events(live: httpx.AsyncClient, account: Account) -> None:
    await inject(live, account, kind="stall_stream", after_events=2, duration_ms=60_000)
    seen: list[str] = []
    with pytest.raises(httpx.ReadTimeout):
        async with live.stream(
            "POST",
            URL,
            headers=codex_headers(account),
            json=codex_body(),
            timeout=httpx.Timeout(5, read=0.3),
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    seen.append(line[7:])
    assert seen == ["response.created", "response.in_progress"]


async def test_refresh_error_leaves_the_token_usable(
    client: httpx.AsyncClient, account: Account
) -> None:
    await inject(client, account, kind="refresh_error", status=502)
    body = {
        "client_id": CLIENT_ID,
        "grant_type": "refresh_token",
        "refresh_token": account.tokens.refresh_token,
    }
    failed = await client.post("/oauth/token", json=body)
    assert failed.status_code == 502
    assert (await client.post("/oauth/token", json=body)).status_code == 200


async def test_refresh_stall_after_rotation_kills_the_old_token(
    live: httpx.AsyncClient, account: Account
) -> None:
    await inject(live, account, kind="refresh_stall_after_rotation", duration_ms=60_000)
    body = {
        "client_id": CLIENT_ID,
        "grant_type": "refresh_token",
        "refresh_token": account.tokens.refresh_token,
    }
    with pytest.raises(httpx.ReadTimeout):
        await live.post("/oauth/token", json=body, timeout=0.3)
    retried = await live.post("/oauth/token", json=body)
    assert retried.json()["error"]["code"] == "refresh_token_reused"


async def test_probability_fault_persists_until_cleared(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = await inject(client, account, kind="http_error", probability=1.0)
    assert created["remaining"] is None
    assert [(await call(client, account)).status_code for _ in range(3)] == [500, 500, 500]
    assert (await client.delete(f"/_sim/accounts/{account.account_id}/faults")).json() == {
        "faults": []
    }
    assert (await call(client, account)).status_code == 200


async def test_partial_probability_hits_some_requests(
    client: httpx.AsyncClient, account: Account
) -> None:
    await inject(client, account, kind="http_error", probability=0.5)
    statuses = {(await call(client, account)).status_code for _ in range(40)}
    assert statuses == {200, 500}


async def test_faults_apply_in_order_and_are_listed(
    client: httpx.AsyncClient, account: Account
) -> None:
    await inject(client, account, kind="token_expired")
    await inject(client, account, kind="cloudflare_403", count=2)
    listed = (await client.get(f"/_sim/accounts/{account.account_id}/faults")).json()["faults"]
    assert [(f["kind"], f["remaining"]) for f in listed] == [
        ("token_expired", 1),
        ("cloudflare_403", 2),
    ]
    assert [(await call(client, account)).status_code for _ in range(4)] == [401, 403, 403, 200]
    recorded = (
        await client.get("/_sim/requests", params={"account_id": account.account_id})
    ).json()["requests"]
    assert [r["fault"] for r in recorded] == [
        "token_expired",
        "cloudflare_403",
        "cloudflare_403",
        None,
    ]


async def test_faults_stay_on_their_account(client: httpx.AsyncClient, app: SimApp) -> None:
    await inject(client, app.accounts[0], kind="http_error", probability=1.0)
    assert (await call(client, app.accounts[1])).status_code == 200


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "http_error", "count": 2, "probability": 0.5},
        {"kind": "rate_limit", "status": 500},
        {"kind": "melted"},
        {"kind": "http_error", "status": 404},
        {"kind": "http_error", "count": 0},
    ],
)
async def test_bad_fault_specs_are_400(
    client: httpx.AsyncClient, account: Account, spec: dict[str, Any]
) -> None:
    response = await client.post(f"/_sim/accounts/{account.account_id}/faults", json=spec)
    assert response.status_code == 400
    assert response.json()["detail"]


async def test_latency_model(live: httpx.AsyncClient, account: Account) -> None:
    await live.patch(
        f"/_sim/accounts/{account.account_id}", json={"ttfb_ms": 60, "event_delay_ms": 10}
    )
    started = time.monotonic()
    async with live.stream(
        "POST", URL, headers=codex_headers(account), json=codex_body()
    ) as response:
        first = time.monotonic() - started
        text = (await response.aread()).decode()
    total = time.monotonic() - started
    events = sse_events(text)
    assert first >= 0.06
    assert total >= 0.06 + 0.01 * (len(events) - 1)
    assert events[-1]["type"] == "response.completed"
