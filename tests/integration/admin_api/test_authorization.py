"""Every change is refused without a token, with a wrong one and with a viewer token."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from codexpool_admin_api.app import create_app
from codexpool_admin_api.config import Settings
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.admin_api.conftest import ADMIN_TOKEN
from tests.integration.admin_api.helpers import viewer_headers

ADMIN_ONLY_READS = {"/api/tokens", "/api/audit", "/api/export"}


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    # Many deliberate failures in a row: lift the failed-authentication limit for this test.
    lenient = settings.model_copy(update={"auth_failures_per_window": 10_000})
    return create_app(lenient, publisher=InMemoryPublisher())


@pytest.fixture
def client(app: FastAPI, sync_redis: redis.Redis) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def _api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every documented operation under /api, path parameters filled in."""
    routes: list[tuple[str, str]] = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/api/"):
            concrete = re.sub(r"\{[^}]+\}", "x1", path)
            routes.extend((method.upper(), concrete) for method in sorted(operations))
    return routes


def test_every_change_is_refused_without_admin_rights(app: FastAPI, client: TestClient) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    callers = {
        "no token": ({}, 401),
        "wrong token": ({"Authorization": "Bearer cpa_not-a-real-token"}, 401),
        "not bearer": ({"Authorization": f"Basic {ADMIN_TOKEN}"}, 401),
        "viewer": (viewer_headers(client, admin), 403),
    }
    routes = _api_routes(app)
    changes = [(m, p) for m, p in routes if m != "GET"]
    assert len(changes) >= 15
    for method, path in changes:
        for caller, (headers, status) in callers.items():
            response = client.request(method, path, headers=headers, json={})
            assert response.status_code == status, (caller, method, path, response.text)
            assert set(response.json()) == {"error"}
    for method, path in routes:
        if method == "GET":
            for caller in ("no token", "wrong token"):
                headers, status = callers[caller]
                assert client.get(path, headers=headers).status_code == status, (caller, path)
    for path in ADMIN_ONLY_READS:
        assert client.get(path, headers=callers["viewer"][0]).status_code == 403, path
    assert client.get("/api/providers", headers=callers["viewer"][0]).status_code == 200
