from __future__ import annotations

import base64
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from codexpool_shared.crypto import Keyring
from codexpool_shared.service import state_in
from codexpool_shared.testing.sessions import InMemoryUiSessions
from codexpool_ui.app import create_app
from codexpool_ui.config import Settings
from codexpool_ui.deps import State
from codexpool_ui.session import Sessions
from tests.unit.ui.conftest import sign_in
from tests.unit.ui.fake_admin import ADMIN_TOKEN, FakeAdmin

OLD = base64.b64encode(b"o" * 32).decode()
NEW = base64.b64encode(b"n" * 32).decode()


def _sessions(secret: str = NEW, store: InMemoryUiSessions | None = None) -> Sessions:
    return Sessions(store or InMemoryUiSessions(), Keyring.from_secret(secret), max_age_s=60)


async def test_the_cookie_names_the_session_without_carrying_the_token() -> None:
    sessions = _sessions()
    session = await sessions.sign_in(ADMIN_TOKEN, name="admin token", role="admin")
    value = sessions.cookie(session)
    assert ADMIN_TOKEN not in value
    assert ADMIN_TOKEN not in base64.urlsafe_b64decode(value.split(".")[0] + "==").decode("latin1")
    assert await sessions.load(value) == session
    assert session.signed_in and session.is_admin and session.sid


async def test_signing_out_ends_the_session_for_a_replayed_cookie() -> None:
    store = InMemoryUiSessions()
    sessions, other_replica = _sessions(store=store), _sessions(store=store)
    session = await sessions.sign_in(ADMIN_TOKEN, name="admin token", role="admin")
    value = sessions.cookie(session)
    await sessions.end(session)
    replayed = await other_replica.load(value)
    assert replayed is not None and not replayed.signed_in
    assert replayed.csrf == session.csrf


async def test_a_tampered_or_foreign_cookie_is_no_session() -> None:
    sessions = _sessions()
    value = sessions.cookie(await sessions.sign_in(ADMIN_TOKEN, name="a", role="admin"))
    assert await sessions.load(value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]) is None
    assert await _sessions(OLD).load(value) is None
    assert await sessions.load("") is None and await sessions.load("garbage") is None


async def test_an_expired_cookie_is_no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = _sessions()
    value = sessions.cookie(await sessions.sign_in(ADMIN_TOKEN, name="a", role="admin"))
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert await sessions.load(value) is None


async def test_cookies_survive_a_key_rotation() -> None:
    store = InMemoryUiSessions()
    before = _sessions(OLD, store)
    session = await before.sign_in(ADMIN_TOKEN, name="a", role="admin")
    rotated = _sessions(f"{NEW},{OLD}", store)
    assert await rotated.load(before.cookie(session)) == session


def test_the_ui_refuses_to_start_without_a_secret_key() -> None:
    with pytest.raises(ValueError, match="CODEXPOOL_SECRET_KEY"):
        create_app(Settings(secret_key=None))


def test_lifespan_closes_the_admin_api_client(fake: FakeAdmin) -> None:
    settings = Settings.model_validate({"CODEXPOOL_SECRET_KEY": NEW})
    app = create_app(
        settings, transport=httpx.ASGITransport(app=fake.app), session_store=InMemoryUiSessions()
    )
    with TestClient(app) as client:
        ready = client.get("/readyz").json()
        assert ready == {"status": "ok", "checks": {"admin_api": "ok", "sessions": "ok"}}
        admin_client = state_in(client.app_state, State).admin._http
        assert not admin_client.is_closed
    assert admin_client.is_closed


def test_pages_carry_security_headers_and_static_assets_are_served(client: TestClient) -> None:
    page = client.get("/login")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert client.get("/static/live.js").status_code == 200
    assert client.get("/static/app.css").status_code == 200


def test_admin_api_calls_are_counted(client: TestClient) -> None:
    client.get("/login")
    sign_in(client, ADMIN_TOKEN)
    metrics = client.get("/metrics").text
    assert 'codexpool_ui_admin_api_calls_total{answer="2xx"}' in metrics


def test_unknown_pages_and_methods_get_the_error_page(client: TestClient) -> None:
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert 'data-testid="error-page"' in missing.text and "Not found" in missing.text
    wrong = client.put("/login")
    assert wrong.status_code == 405
    assert "Request refused" in wrong.text


def test_an_unexpected_error_is_a_page_without_a_traceback(fake: FakeAdmin) -> None:
    settings = Settings.model_validate({"CODEXPOOL_SECRET_KEY": NEW})
    app = create_app(
        settings, transport=httpx.ASGITransport(app=fake.app), session_store=InMemoryUiSessions()
    )

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "secret detail" not in response.text and "Traceback" not in response.text
