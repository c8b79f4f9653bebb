from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.integration.admin_api.tokens import auth_json


def register(api: TestClient, name: str, **kwargs: Any) -> dict[str, Any]:
    response = api.post(
        "/api/providers", json={"name": name, "auth_json": auth_json(name, **kwargs)}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def create_agent(api: TestClient, agent_id: str = "my-agent") -> dict[str, Any]:
    response = api.post("/api/agents", json={"id": agent_id, "name": "My agent"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def viewer_headers(api: TestClient, admin: dict[str, str] | None = None) -> dict[str, str]:
    body = {"name": "viewer", "role": "viewer"}
    created = api.post("/api/tokens", json=body, headers=admin).json()
    return {"Authorization": f"Bearer {created['token']}"}


def error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body
