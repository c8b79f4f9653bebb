from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis
from fastapi.testclient import TestClient

from codexpool_admin_api.app import create_app
from codexpool_admin_api.config import Settings
from codexpool_shared.crypto import Keyring
from codexpool_shared.events import PoolChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.store.agents import key_digest
from codexpool_shared.testing.infra import unique_namespace
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.admin_api.conftest import ADMIN_TOKEN
from tests.integration.admin_api.helpers import create_agent, error, register
from tests.integration.admin_api.tokens import auth_json

POOL = "/api/agents/my-agent/codex-pool"


def _seed(api: TestClient) -> dict[str, Any]:
    register(api, "acct-1")
    api.post("/api/providers", json={"name": "acct-2", "auth_json": auth_json("acct-2")})
    agent = create_agent(api)
    api.put(POOL, json={"strategy": "primary-first", "providers": ["acct-2", "acct-1"]})
    api.patch("/api/providers/acct-1", json={"status": "disabled"})
    return agent


def _snapshot(client: redis.Redis, namespace: str) -> dict[bytes, Any]:
    """Every key of the namespace with its value, to prove nothing changed."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=Keys(namespace).pattern):
        kind = client.type(key)
        if kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"set":
            out[key] = client.smembers(key)
        elif kind == b"string":
            out[key] = client.get(key)
    return out


@pytest.fixture
def other_api(settings: Settings, sync_redis: redis.Redis) -> Iterator[tuple[TestClient, Keys]]:
    """A second, empty deployment sharing the secret key (a restore target)."""
    namespace = unique_namespace()
    other = settings.model_copy(update={"namespace": namespace})
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(create_app(other, publisher=InMemoryPublisher()), headers=headers) as client:
        yield client, Keys(namespace)
    for key in sync_redis.scan_iter(match=Keys(namespace).pattern):
        sync_redis.delete(key)


def test_export_then_import_restores_everything(
    api: TestClient, other_api: tuple[TestClient, Keys], sync_redis: redis.Redis
) -> None:
    agent = _seed(api)
    exported = api.get("/api/export")
    assert exported.status_code == 200
    doc = exported.json()
    assert doc["format"] == "codexpool-config"
    assert [p["name"] for p in doc["providers"]] == ["acct-1", "acct-2"]
    assert doc["providers"][0]["record"]["access_token"].startswith("v1:")
    target, keys = other_api
    restored = target.post("/api/import", json=doc)
    assert restored.status_code == 200, restored.text
    assert restored.json() == {"providers": 2, "agents": 1, "pool_versions": {"my-agent": 2}}
    pool = target.get(POOL).json()
    assert (pool["strategy"], pool["providers"]) == ("primary-first", ["acct-2", "acct-1"])
    assert target.get("/api/providers/acct-1").json()["status"] == "disabled"
    assert sync_redis.get(keys.api_key(key_digest(agent["api_key"]))) == b"my-agent"
    again = target.get("/api/export").json()
    assert again["providers"] == doc["providers"]
    assert again["agents"][0]["key_digests"] == doc["agents"][0]["key_digests"]


def test_import_replaces_and_publishes_pool_changes(
    api: TestClient, sink: InMemoryPublisher, sync_redis: redis.Redis, keys: Keys
) -> None:
    _seed(api)
    doc = api.get("/api/export").json()
    create_agent(api, "extra-agent")
    api.put(
        "/api/agents/extra-agent/codex-pool",
        json={"strategy": "round-robin", "providers": ["acct-2"]},
    )
    sink.published.clear()
    assert api.post("/api/import", json=doc).status_code == 200
    assert api.get("/api/agents/extra-agent").status_code == 404
    changes = sorted((e.agent_id, e.change) for e in sink.events if isinstance(e, PoolChangedV1))
    assert changes == [("extra-agent", "deleted"), ("my-agent", "updated")]
    assert api.get(POOL).json()["version"] == 2
    assert api.get("/api/audit").json()["data"][0]["action"] == "config.import"


def _malformed(doc: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    cases: list[tuple[dict[str, Any], str]] = []

    def variant(param: str) -> dict[str, Any]:
        changed = copy.deepcopy(doc)
        cases.append((changed, param))
        return changed

    variant("format")["format"] = "something-else"
    envelope = variant("providers[0].record.access_token")["providers"][0]["record"]
    envelope["access_token"] = envelope["access_token"][:-4] + "AAAA"
    swapped = variant("providers[1].record.refresh_token")["providers"]
    swapped[1]["record"]["refresh_token"] = swapped[0]["record"]["refresh_token"]
    variant("providers[0].record.access_token")["providers"][0]["record"]["access_token"] = "eyJ"
    pool = variant("agents[0].pool.providers[1]")["agents"][0]["pool"]
    pool["providers"] = '["acct-2", "ghost"]'
    variant("agents[0].pool.strategy")["agents"][0]["pool"]["strategy"] = "random"
    variant("providers[1].name")["providers"][1]["name"] = "acct-1"
    variant("agents[0].key_digests")["agents"][0]["key_digests"] = {"not-hex": "{}"}
    del variant("providers.0.record")["providers"][0]["record"]
    return cases


def test_a_malformed_export_changes_nothing(
    api: TestClient, sink: InMemoryPublisher, sync_redis: redis.Redis, keys: Keys
) -> None:
    _seed(api)
    doc = api.get("/api/export").json()
    create_agent(api, "extra-agent")
    before = _snapshot(sync_redis, keys.namespace)
    published = len(sink.events)
    for changed, param in _malformed(doc):
        response = api.post("/api/import", json=changed)
        assert response.status_code == 422, (param, response.text)
        assert error(response)["param"] == param
    audit_key = keys.audit.encode()
    after = _snapshot(sync_redis, keys.namespace)
    assert {k: v for k, v in after.items() if k != audit_key} == {
        k: v for k, v in before.items() if k != audit_key
    }
    assert len(sink.events) == published


def test_oversized_bodies_are_refused(settings: Settings, sync_redis: redis.Redis) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2048})
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(create_app(small, publisher=InMemoryPublisher()), headers=headers) as client:
        doc = {"format": "codexpool-config", "padding": "x" * 4096}
        declared = client.post("/api/import", json=doc)
        assert declared.status_code == 413
        assert error(declared)["code"] == "body_too_large"

        def chunks() -> Iterator[bytes]:
            yield b'{"format": "codexpool-config", "padding": "'
            yield b"x" * 4096
            yield b'"}'

        streamed = client.post(
            "/api/import", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert "request body over 2048 bytes" in error(streamed)["message"]


OVERFLOW_KEY = "sk-overflow-key-not-in-exports"
PROXY_SECRET = "proxy-secret-not-in-exports"


def test_overflow_and_proxy_travel_encrypted_and_restore(
    api: TestClient,
    other_api: tuple[TestClient, Keys],
    settings: Settings,
    sync_redis: redis.Redis,
) -> None:
    """Issue 19: a pool's overflow endpoint and a provider's egress proxy are exported as their
    envelopes (never in plain), restored by an import and checked by it first."""
    _seed(api)
    overflow = {"base_url": "https://api.example/v1", "api_key": OVERFLOW_KEY}
    # acct-1 is disabled by now: the pool keeps acct-2 only.
    put = api.put(
        POOL, json={"strategy": "primary-first", "providers": ["acct-2"], "overflow": overflow}
    )
    assert put.status_code == 200, put.text
    proxy = f"socks5://pool:{PROXY_SECRET}@10.0.0.7:1081"
    assert api.patch("/api/providers/acct-2", json={"proxy_url": proxy}).status_code == 200
    exported = api.get("/api/export")
    assert OVERFLOW_KEY not in exported.text and PROXY_SECRET not in exported.text
    doc = exported.json()
    [agent] = doc["agents"]
    assert agent["overflow"]["base_url"] == "https://api.example/v1"
    assert agent["overflow"]["api_key"].startswith("v1:")
    assert doc["providers"][1]["record"]["proxy"] == "socks5://10.0.0.7:1081"

    target, keys = other_api
    restored = target.post("/api/import", json=doc)
    assert restored.status_code == 200, restored.text
    assert target.get(POOL).json()["overflow"] == {
        "base_url": "https://api.example/v1",
        "api_key_set": True,
    }
    assert target.get("/api/providers/acct-2").json()["proxy"] == "socks5://10.0.0.7:1081"
    keyring = Keyring.from_settings(settings)
    stored = cast(dict[bytes, bytes], sync_redis.hgetall(keys.overflow("my-agent")))
    key = keyring.decrypt(stored[b"api_key"].decode(), record="my-agent", field="api_key")
    assert key == OVERFLOW_KEY
    again = target.get("/api/export").json()
    assert again["agents"][0]["overflow"] == agent["overflow"]
    assert again["providers"] == doc["providers"]

    # An export without it (made before overflows were exported) restores a pool without one.
    del doc["agents"][0]["overflow"]
    assert target.post("/api/import", json=doc).status_code == 200
    assert target.get(POOL).json()["overflow"] is None
    assert not sync_redis.exists(keys.overflow("my-agent"))


def test_an_unusable_overflow_or_proxy_is_refused_and_changes_nothing(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    _seed(api)
    api.put(
        POOL,
        json={
            "strategy": "primary-first",
            "providers": ["acct-2"],
            "overflow": {"base_url": "https://api.example/v1", "api_key": OVERFLOW_KEY},
        },
    )
    api.patch("/api/providers/acct-2", json={"proxy_url": "http://proxy.example:3128"})
    doc: dict[str, Any] = api.get("/api/export").json()
    before = _snapshot(sync_redis, keys.namespace)
    cases: list[tuple[dict[str, Any], str]] = []

    def variant(param: str) -> dict[str, Any]:
        changed = copy.deepcopy(doc)
        cases.append((changed, param))
        return changed

    variant("agents[0].overflow.api_key")["agents"][0]["overflow"]["api_key"] = OVERFLOW_KEY
    # An envelope of the right key, bound to another record (an agent's key is its own).
    moved = variant("agents[0].overflow.api_key")
    moved["agents"][0]["overflow"]["api_key"] = doc["providers"][0]["record"]["access_token"]
    variant("agents[0].overflow.base_url")["agents"][0]["overflow"]["base_url"] = "ftp://x"
    variant("agents[0].overflow")["agents"][0]["overflow"]["extra"] = "1"
    swapped = variant("providers[1].record.proxy_url")["providers"][1]["record"]
    swapped["proxy_url"] = doc["providers"][0]["record"]["access_token"]
    variant("providers[1].record.proxy")["providers"][1]["record"]["proxy"] = "http://elsewhere"
    for changed, param in cases:
        response = api.post("/api/import", json=changed)
        assert response.status_code == 422, (param, response.text)
        assert error(response)["param"] == param
        assert OVERFLOW_KEY not in response.text
    audit_key = keys.audit.encode()
    after = _snapshot(sync_redis, keys.namespace)
    assert {k: v for k, v in after.items() if k != audit_key} == {
        k: v for k, v in before.items() if k != audit_key
    }
