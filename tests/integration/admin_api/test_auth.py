from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient

from codexpool_admin_api.app import create_app
from codexpool_admin_api.config import Settings
from codexpool_shared.crypto import secret_digest
from codexpool_shared.keys import Keys
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.admin_api.conftest import ADMIN_TOKEN


def _create(api: TestClient, role: str, name: str = "ci") -> dict[str, str]:
    response = api.post("/api/tokens", json={"name": name, "role": role})
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def test_created_token_is_shown_once_and_stored_hashed(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    created = _create(api, "viewer")
    token = created["token"]
    assert token.startswith("cpa_")
    listed = api.get("/api/tokens").json()["data"]
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0]
    assert sync_redis.exists(keys.admin_token(secret_digest(token)))
    for key in sync_redis.scan_iter(match=keys.pattern):
        if sync_redis.type(key) == b"string":
            assert token.encode() not in (sync_redis.get(key) or b"")


def test_viewer_reads_but_cannot_change(api: TestClient) -> None:
    viewer = {"Authorization": f"Bearer {_create(api, 'viewer')['token']}"}
    assert api.get("/api/tokens", headers=viewer).status_code == 403
    refused = api.post("/api/tokens", json={"name": "x", "role": "admin"}, headers=viewer)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert api.get("/api/audit", headers=viewer).status_code == 403


def test_revoked_token_stops_working(api: TestClient) -> None:
    created = _create(api, "admin")
    headers = {"Authorization": f"Bearer {created['token']}"}
    assert api.get("/api/tokens", headers=headers).status_code == 200
    assert api.delete(f"/api/tokens/{created['id']}").status_code == 204
    gone = api.get("/api/tokens", headers=headers)
    assert gone.status_code == 401
    assert gone.headers["www-authenticate"] == "Bearer"
    assert api.delete(f"/api/tokens/{created['id']}").json()["error"]["param"] == "token_id"


def test_missing_and_wrong_tokens_are_401_in_the_shared_shape(api: TestClient) -> None:
    missing = api.get("/api/tokens", headers={"Authorization": ""})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_token"
    wrong = api.get("/api/tokens", headers={"Authorization": "Bearer cpa_wrong"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_token"


def test_failed_authentication_is_rate_limited_per_client(api: TestClient) -> None:
    wrong = {"Authorization": "Bearer cpa_guess"}
    codes = [api.get("/api/tokens", headers=wrong).status_code for _ in range(5)]
    assert codes == [401] * 5
    limited = api.get("/api/tokens", headers=wrong)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # Past the limit even the right token waits: guessing cannot continue at full speed.
    assert api.get("/api/tokens").status_code == 429
    metrics = api.get("/metrics").text
    assert 'codexpool_admin_auth_failures_total{reason="invalid_token"} 5.0' in metrics
    assert 'codexpool_admin_auth_failures_total{reason="rate_limited"} 2.0' in metrics


def test_changes_are_audited_without_secrets(api: TestClient) -> None:
    created = _create(api, "viewer", name="dashboard")
    api.delete(f"/api/tokens/{created['id']}")
    entries = api.get("/api/audit").json()["data"]
    assert [e["action"] for e in entries] == ["token.revoke", "token.create"]
    assert entries[1]["actor_id"] == "bootstrap"
    assert entries[1]["target"] == created["id"]
    assert entries[1]["after"]["name"] == "dashboard"
    assert created["token"] not in api.get("/api/audit").text
    page = api.get("/api/audit", params={"limit": 1}).json()
    assert len(page["data"]) == 1
    older = api.get("/api/audit", params={"limit": 1, "before": page["next_before"]}).json()
    assert older["data"][0]["action"] == "token.create"
    assert 'codexpool_admin_changes_total{action="token.create"} 1.0' in api.get("/metrics").text


@pytest.mark.parametrize("before", ["18446744073709551616-0", "0-99999999999999999999", "1-x"])
def test_an_audit_cursor_redis_cannot_read_is_refused(api: TestClient, before: str) -> None:
    answer = api.get("/api/audit", params={"before": before})
    assert answer.status_code == 422, answer.text
    assert "before" in answer.text
    assert api.get("/api/audit", params={"before": "18446744073709551615-0"}).status_code == 200


def test_me_names_the_caller_and_role(api: TestClient) -> None:
    assert api.get("/api/me").json() == {
        "id": "bootstrap",
        "name": "bootstrap admin token",
        "role": "admin",
    }
    viewer = _create(api, "viewer", name="wallboard")
    me = api.get("/api/me", headers={"Authorization": f"Bearer {viewer['token']}"}).json()
    assert me == {"id": viewer["id"], "name": "wallboard", "role": "viewer"}


def test_answers_are_never_cached(api: TestClient) -> None:
    created = api.post("/api/tokens", json={"name": "ci", "role": "viewer"})
    assert created.headers["cache-control"] == "no-store"
    assert api.get("/api/tokens", headers={"Authorization": ""}).headers["cache-control"] == (
        "no-store"
    )


def test_redis_down_fails_closed_with_503(settings: Settings) -> None:
    unreachable = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    app = create_app(unreachable, publisher=InMemoryPublisher())
    with TestClient(app, headers=headers) as client:
        for method, path in (("GET", "/api/providers"), ("POST", "/api/agents")):
            response = client.request(method, path, json={"id": "a"})
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "store_unavailable"


def test_a_body_is_not_read_before_its_caller_is_authenticated(api: TestClient) -> None:
    garbage = b"{" * 200_000  # malformed JSON: parsing it first would answer 422
    headers = {"Content-Type": "application/json"}
    anonymous = api.post(
        "/api/providers", content=garbage, headers={**headers, "Authorization": ""}
    )
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"]["code"] == "missing_token"
    wrong = api.post(
        "/api/agents", content=garbage, headers={**headers, "Authorization": "Bearer cpa_wrong"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_token"
    # Authenticated, the same body reaches the route and is refused for what it is.
    assert api.post("/api/agents", content=garbage, headers=headers).status_code == 422
