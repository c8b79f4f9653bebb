"""``.../responses/compact``: remote compaction answers one JSON document, charged like a turn."""

from __future__ import annotations

import httpx
import pytest

from codexpool_sim.accounts import Account
from tests.unit.sim.helpers import codex_headers

HISTORY = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "yo"}]},
]


@pytest.mark.parametrize("path", ["/backend-api/codex/responses/compact", "/v1/responses/compact"])
async def test_compaction_keeps_user_messages_and_adds_a_compaction_item(
    client: httpx.AsyncClient, account: Account, path: str
) -> None:
    body = {"model": "gpt-5-codex", "instructions": "compact", "input": HISTORY}
    response = await client.post(path, headers=codex_headers(account), json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "x-codex-primary-used-percent" in response.headers
    doc = response.json()
    assert doc["object"] == "response.compaction"
    assert doc["output"][0] == HISTORY[0]
    assert doc["output"][-1]["type"] == "compaction"
    assert doc["usage"]["total_tokens"] == 1290
    assert account.requests == 1


async def test_compaction_is_refused_like_the_model_route(
    client: httpx.AsyncClient, account: Account
) -> None:
    url = "/backend-api/codex/responses/compact"
    assert (await client.post(url, json={"input": HISTORY})).status_code == 401
    account.quota.primary.used_percent = 100.0
    limited = await client.post(url, headers=codex_headers(account), json={"input": HISTORY})
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "usage_limit_reached"
    bad = await client.post(url, headers=codex_headers(account), json={"input": "x"})
    assert bad.status_code == 400
