from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from codexpool_shared.testing.sessions import InMemoryUiSessions
from codexpool_ui.app import create_app
from codexpool_ui.config import Settings
from tests.unit.ui.fake_admin import FakeAdmin

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_settings(**overrides: object) -> Settings:
    key = base64.b64encode(bytes(range(32))).decode()
    return Settings.model_validate(
        {"CODEXPOOL_SECRET_KEY": key, "CODEXPOOL_ADMIN_API_URL": "http://admin.test", **overrides}
    )


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


@pytest.fixture
def fake() -> FakeAdmin:
    return FakeAdmin()


@pytest.fixture
def client(fake: FakeAdmin) -> Iterator[TestClient]:
    app = create_app(
        make_settings(),
        transport=httpx.ASGITransport(app=fake.app),
        session_store=InMemoryUiSessions(),
    )
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def sign_in(client: TestClient, token: str) -> str:
    """Signs in through the form; returns the session's CSRF token."""
    form = client.get("/login")
    response = client.post("/login", data={"token": token, "csrf_token": csrf_of(form.text)})
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/agents").text)
