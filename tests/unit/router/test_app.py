"""The app in process: lifespan, and bad input answered before anything is forwarded."""

from __future__ import annotations

import base64
import os

import pytest
from fastapi.testclient import TestClient
from opentelemetry.trace import SpanKind
from pydantic import RedisDsn, SecretStr

from codexpool_router.app import create_app
from codexpool_router.config import Settings
from codexpool_shared import telemetry
from codexpool_shared.events import BaseEvent, EncodedEvent, RequestRejectedV1


class FakePublisher:
    def __init__(self) -> None:
        self.events: list[BaseEvent | EncodedEvent] = []
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    def publish(self, event: BaseEvent | EncodedEvent) -> None:
        self.events.append(event)

    async def close(self, deadline_s: float = 5.0) -> None:
        self.closed = True


@pytest.fixture
def settings() -> Settings:
    return Settings(
        secret_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
        max_body_bytes=1000,
        redis_url=RedisDsn("redis://127.0.0.1:1/0"),
        api_docs=True,
    )


def test_refuses_to_start_without_a_secret_key() -> None:
    with pytest.raises(ValueError, match="CODEXPOOL_SECRET_KEY"):
        create_app(Settings())


def test_lifespan_opens_and_closes_the_publisher(settings: Settings) -> None:
    publisher = FakePublisher()
    with TestClient(create_app(settings, publisher=publisher)) as client:
        assert publisher.started
        assert client.get("/livez").status_code == 200
    assert publisher.closed


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({}, b'{"model": "m"}', 401, "missing_api_key"),
        ({"authorization": "Bearer cpk_x"}, b"{nope", 400, "invalid_json"),
        ({"authorization": "Bearer cpk_x"}, b'{"input": "x"}', 400, "missing_required_parameter"),
        (
            {"authorization": "Bearer cpk_x"},
            b'{"model": "' + b"m" * 2000 + b'"}',
            413,
            "request_too_large",
        ),
    ],
)
def test_bad_input_is_answered_in_openai_shape(
    settings: Settings, headers: dict[str, str], body: bytes, status: int, code: str
) -> None:
    publisher = FakePublisher()
    with TestClient(create_app(settings, publisher=publisher)) as client:
        response = client.post("/v1/responses", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers["x-codexpool-attempts"] == "0"
    # Refused before routing, yet accounted: one request.rejected.v1 and no outcome.
    [event] = publisher.events
    assert isinstance(event, RequestRejectedV1)
    assert (event.reason, event.status_code, event.route) == (code, status, "v1")
    assert event.request_id == response.headers["x-request-id"]
    assert event.agent_id is None


def test_unreachable_store_refuses_an_agent_this_replica_has_not_seen(
    settings: Settings,
) -> None:
    # Fail-open serves only agents with a recent snapshot (failopen.py); this one has none.
    with TestClient(create_app(settings, publisher=FakePublisher())) as client:
        response = client.post(
            "/v1/responses", json={"model": "m"}, headers={"authorization": "Bearer cpk_x"}
        )
        metrics = client.get("/metrics").text
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert "codexpool_router_store_unavailable_total 1.0" in metrics
    assert "codexpool_router_store_breaker_state 0.0" in metrics  # 1 failure of 3


def test_hot_routes_are_traced_and_other_methods_are_refused(settings: Settings) -> None:
    publisher = FakePublisher()
    with (
        telemetry.capture_spans() as spans,
        TestClient(create_app(settings, publisher=publisher)) as client,
    ):
        refused = client.get("/backend-api/codex/responses")
        rejected = client.post("/backend-api/codex/responses", content=b'{"model": "m"}')
    assert refused.status_code == 405
    assert refused.headers["x-request-id"].startswith("req_")
    assert rejected.status_code == 401
    servers = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert [(s.name, (s.attributes or {}).get("http.response.status_code")) for s in servers] == [
        ("GET /backend-api/codex/responses", 405),
        ("POST /backend-api/codex/responses", 401),
    ]


def test_openapi_documents_each_route_once_and_other_methods_get_405(settings: Settings) -> None:
    with TestClient(create_app(settings, publisher=FakePublisher())) as client:
        paths = client.get("/openapi.json").json()["paths"]
        refused = client.delete("/v1/responses")
    assert {path: sorted(operations) for path, operations in paths.items()} == {
        "/v1/responses": ["post"],
        "/backend-api/codex/responses": ["post"],
        "/v1/chat/completions": ["post"],
        "/v1/responses/compact": ["post"],
        "/backend-api/codex/responses/compact": ["post"],
        "/v1/usage": ["get"],
        "/backend-api/wham/usage": ["get"],
        "/v1/models": ["get"],
        "/backend-api/codex/models": ["get"],
    }
    assert paths["/v1/responses"]["post"]["requestBody"]["content"]["application/json"]
    assert (refused.status_code, refused.headers["allow"]) == (405, "POST")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_api_key"),
        ({"authorization": "Bearer cpk_x"}, 503, "store_unavailable"),
    ],
)
def test_usage_refuses_a_caller_as_the_responses_routes_do(
    settings: Settings, headers: dict[str, str], status: int, code: str
) -> None:
    with TestClient(create_app(settings, publisher=FakePublisher())) as client:
        routed = client.post("/v1/responses", json={"model": "m"}, headers=headers)
        usage = client.get("/v1/usage", headers=headers)
    assert (routed.status_code, routed.json()["error"]["code"]) == (status, code)
    assert (usage.status_code, usage.json()) == (routed.status_code, routed.json())
    assert usage.headers["x-request-id"].startswith("req_")
