from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from codexpool_shared.testing.sessions import InMemoryUiSessions
from codexpool_ui.app import create_app
from codexpool_ui.pages import safe_next
from codexpool_ui.session import COOKIE_NAME
from tests.unit.ui.conftest import csrf_of, make_settings, sign_in
from tests.unit.ui.fake_admin import ADMIN_TOKEN, VIEWER_TOKEN, FakeAdmin


def test_signed_out_pages_redirect_to_sign_in(client: TestClient) -> None:
    response = client.get("/agents/my-agent/codex-pool")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/agents/my-agent/codex-pool"
    assert client.get("/agents/my-agent/codex-pool/live").status_code == 401


def test_sign_in_sets_an_httponly_cookie_without_the_token(client: TestClient) -> None:
    form = client.get("/login")
    response = client.post(
        "/login",
        data={"token": ADMIN_TOKEN, "csrf_token": csrf_of(form.text), "next": "/agents/my-agent"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/agents/my-agent"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert ADMIN_TOKEN not in cookie
    page = client.get("/agents")
    assert page.status_code == 200
    assert 'data-testid="role-badge">admin<' in page.text


def test_secure_cookie_when_configured(fake: FakeAdmin) -> None:
    settings = make_settings(UI_COOKIE_SECURE="true")
    app = create_app(
        settings, transport=httpx.ASGITransport(app=fake.app), session_store=InMemoryUiSessions()
    )
    with TestClient(app, follow_redirects=False) as client:
        page = client.get("/login")
        assert "Secure" in page.headers["set-cookie"]
        assert page.headers["strict-transport-security"] == "max-age=31536000"


def test_no_hsts_over_plain_http(client: TestClient) -> None:
    assert "strict-transport-security" not in client.get("/login").headers


def test_a_wrong_token_is_refused_with_a_clear_message(client: TestClient) -> None:
    form = client.get("/login")
    response = client.post("/login", data={"token": "nope", "csrf_token": csrf_of(form.text)})
    assert response.status_code == 401
    assert "The admin API did not accept this token." in response.text
    assert COOKIE_NAME not in response.headers.get("set-cookie", "")


def test_sign_in_without_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"token": ADMIN_TOKEN})
    assert response.status_code == 403
    assert "did not carry a valid CSRF token" in response.text


def test_a_cross_site_post_is_refused_even_with_the_token(client: TestClient) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    response = client.post(
        "/agents/my-agent/codex-pool/refresh",
        data={"csrf_token": csrf},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "submitted from another site" in response.text


def test_a_post_a_browser_marks_cross_site_is_refused(client: TestClient) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    response = client.post(
        "/agents/my-agent/codex-pool/refresh",
        data={"csrf_token": csrf},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403
    same_origin = client.post(
        "/logout", data={"csrf_token": csrf}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert same_origin.status_code == 303


def test_sign_out_clears_the_session(client: TestClient) -> None:
    csrf = sign_in(client, VIEWER_TOKEN)
    response = client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/login?notice=signed-out"
    assert client.get("/agents").status_code == 303


def test_a_cookie_replayed_after_sign_out_is_signed_out(client: TestClient) -> None:
    csrf = sign_in(client, VIEWER_TOKEN)
    cookie = client.cookies[COOKIE_NAME]
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    client.cookies.set(COOKIE_NAME, cookie)
    replayed = client.get("/agents")
    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith("/login")


def test_a_revoked_token_sends_the_user_back_to_sign_in(
    client: TestClient, fake: FakeAdmin
) -> None:
    sign_in(client, ADMIN_TOKEN)
    fake.revoked.add(ADMIN_TOKEN)
    response = client.get("/agents")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?notice=expired"
    assert f'{COOKIE_NAME}=""' in response.headers["set-cookie"]
    assert client.get("/agents/my-agent/codex-pool/live").status_code == 401


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/agents/x", "/agents/x"),
        ("//evil.example/", "/agents"),
        ("/\\evil.example", "/agents"),
        ("https://evil.example", "/agents"),
        (None, "/agents"),
    ],
)
def test_only_local_paths_follow_sign_in(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected
