"""The UI names the browser's address to the admin API, which limits failed sign-ins per address."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

from codexpool_shared.testing.sessions import InMemoryUiSessions
from codexpool_ui.app import create_app
from tests.unit.ui.conftest import csrf_of, make_settings, sign_in
from tests.unit.ui.fake_admin import ADMIN_TOKEN, FakeAdmin

BROWSER = ("203.0.113.7", 50123)


def _client(fake: FakeAdmin, address: tuple[str, int] = BROWSER) -> TestClient:
    app = create_app(
        make_settings(),
        transport=httpx.ASGITransport(app=fake.app),
        session_store=InMemoryUiSessions(),
    )
    return TestClient(app, follow_redirects=False, client=address)


def test_every_admin_api_call_names_the_browser_address(fake: FakeAdmin) -> None:
    fake.pools["my-agent"] = {"strategy": "round-robin", "providers": [], "version": 1}
    with _client(fake) as client:
        form = client.get("/login")
        wrong = client.post("/login", data={"token": "nope", "csrf_token": csrf_of(form.text)})
        assert wrong.status_code == 401
        csrf = sign_in(client, ADMIN_TOKEN)
        assert client.get("/agents/my-agent/codex-pool").status_code == 200
        refreshed = client.post("/agents/my-agent/codex-pool/refresh", data={"csrf_token": csrf})
        assert refreshed.status_code == 303
    paths = {path for _, path, _ in fake.calls}
    assert {"/api/me", "/api/agents", "/api/providers"} <= paths
    assert "/api/agents/my-agent/codex-pool/refresh" in paths
    assert fake.forwarded_for == [BROWSER[0]] * len(fake.calls)


def test_a_forwarded_for_header_from_the_browser_is_not_passed_on(fake: FakeAdmin) -> None:
    # Only the UI's server may derive the address from proxy headers, and only from a proxy it
    # trusts; a header the browser made up must never reach the admin API as is.
    with _client(fake) as client:
        form = client.get("/login")
        client.post(
            "/login",
            data={"token": "nope", "csrf_token": csrf_of(form.text)},
            headers={"X-Forwarded-For": "198.51.100.9"},
        )
    assert fake.forwarded_for == [BROWSER[0]]


def test_two_browsers_are_named_apart_and_counted_once(fake: FakeAdmin) -> None:
    with _client(fake, ("203.0.113.7", 1)) as first, _client(fake, ("203.0.113.8", 2)) as second:
        sign_in(first, ADMIN_TOKEN)
        sign_in(second, ADMIN_TOKEN)
        sign_in(first, ADMIN_TOKEN)
        metrics = first.get("/metrics").text
    assert fake.forwarded_for.count("203.0.113.7") == 4
    assert fake.forwarded_for.count("203.0.113.8") == 2
    # Every per-request copy of the client counts into the app's one counter.
    counted = re.search(
        r'^codexpool_ui_admin_api_calls_total\{answer="2xx"\} (\S+)$', metrics, re.M
    )
    assert counted and float(counted.group(1)) == 4
