from __future__ import annotations

import base64
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from codexpool_shared.crypto import Keyring
from codexpool_shared.service import state_in
from codexpool_ui.app import create_app
from codexpool_ui.config import Settings
from codexpool_ui.deps import State
from codexpool_ui.session import Session, SessionCodec
from tests.unit.ui.conftest import sign_in
from tests.unit.ui.fake_admin import ADMIN_TOKEN, FakeAdmin

OLD = base64.b64encode(b"o" * 32).decode()
NEW = base64.b64encode(b"n" * 32).decode()
SIGNED_IN = Session(csrf="c" * 43, token=ADMIN_TOKEN, name="admin token", role="admin")


def test_the_cookie_round_trips_without_the_token_in_clear() -> None:
    codec = SessionCodec(Keyring.from_secret(NEW), max_age_s=60)
    value = codec.dumps(SIGNED_IN)
    assert ADMIN_TOKEN not in value
    assert ADMIN_TOKEN not in base64.urlsafe_b64decode(value.split(".")[0] + "==").decode("latin1")
    assert codec.loads(value) == SIGNED_IN


def test_a_tampered_or_foreign_cookie_is_no_session() -> None:
    codec = SessionCodec(Keyring.from_secret(NEW), max_age_s=60)
    value = codec.dumps(SIGNED_IN)
    assert codec.loads(value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]) is None
    assert SessionCodec(Keyring.from_secret(OLD), max_age_s=60).loads(value) is None
    assert codec.loads("") is None and codec.loads("garbage") is None


def test_an_expired_cookie_is_no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = SessionCodec(Keyring.from_secret(NEW), max_age_s=60)
    value = codec.dumps(SIGNED_IN)
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert codec.loads(value) is None


def test_cookies_survive_a_key_rotation() -> None:
    before = SessionCodec(Keyring.from_secret(OLD), max_age_s=60).dumps(SIGNED_IN)
    rotated = SessionCodec(Keyring.from_secret(f"{NEW},{OLD}"), max_age_s=60)
    assert rotated.loads(before) == SIGNED_IN


def test_the_ui_refuses_to_start_without_a_secret_key() -> None:
    with pytest.raises(ValueError, match="CODEXPOOL_SECRET_KEY"):
        create_app(Settings(secret_key=None))


def test_lifespan_closes_the_admin_api_client(fake: FakeAdmin) -> None:
    settings = Settings.model_validate({"CODEXPOOL_SECRET_KEY": NEW})
    app = create_app(settings, transport=httpx.ASGITransport(app=fake.app))
    with TestClient(app) as client:
        assert client.get("/readyz").json() == {"status": "ok", "checks": {"admin_api": "ok"}}
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
    app = create_app(settings, transport=httpx.ASGITransport(app=fake.app))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "secret detail" not in response.text and "Traceback" not in response.text
