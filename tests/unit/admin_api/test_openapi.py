"""The OpenAPI document: stable operation ids, auth on every route, no token fields (API3)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from codexpool_admin_api.app import create_app
from codexpool_admin_api.config import Settings

# Fields that hold a secret shown exactly once, in the answer that created it.
SHOWN_ONCE = {("TokenCreated", "token"), ("AgentCreated", "api_key"), ("KeyCreated", "api_key")}
TOKEN_FIELDS = {"access_token", "refresh_token", "id_token", "token", "api_key", "secret"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    settings = Settings.model_validate(
        {"CODEXPOOL_SECRET_KEY": base64.b64encode(bytes(32)).decode()}
    )
    return create_app(settings).openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if path.startswith("/api/")
    ]


# docs/SPEC.md section 8, plus tokens, audit and /api/me. Clients generate code from these ids:
# renaming one is a breaking change, so this list changes only on purpose.
OPERATIONS = {
    "GET /api/providers": "list_registered_providers",
    "POST /api/providers": "register_new_provider",
    "GET /api/providers/{name}": "get_registered_provider",
    "PATCH /api/providers/{name}": "update_provider_status",
    "DELETE /api/providers/{name}": "delete_registered_provider",
    "GET /api/providers/{name}/usage-history": "get_provider_usage_history",
    "POST /api/providers/{name}/oauth/device": "start_provider_device_login",
    "POST /api/providers/{name}/oauth/device/poll": "poll_provider_device_login",
    "GET /api/agents": "list_all_agents",
    "POST /api/agents": "create_new_agent",
    "GET /api/agents/{agent_id}": "get_one_agent",
    "PATCH /api/agents/{agent_id}": "patch_agent_limits",
    "DELETE /api/agents/{agent_id}": "delete_one_agent",
    "POST /api/agents/{agent_id}/keys": "add_agent_router_key",
    "DELETE /api/agents/{agent_id}/keys/{key_id}": "revoke_agent_router_key",
    "GET /api/agents/{agent_id}/codex-pool": "get_codex_pool",
    "PUT /api/agents/{agent_id}/codex-pool": "put_codex_pool",
    "POST /api/agents/{agent_id}/codex-pool/providers": "add_codex_pool_member",
    "DELETE /api/agents/{agent_id}/codex-pool/providers/{name}": "remove_codex_pool_member",
    "GET /api/agents/{agent_id}/codex-pool/activity": "get_codex_pool_activity",
    "GET /api/agents/{agent_id}/codex-pool/usage-history": "get_codex_pool_usage_history",
    "POST /api/agents/{agent_id}/codex-pool/refresh": "refresh_codex_pool_live_state",
    "GET /api/agents/{agent_id}/codex-pool/requests": "list_codex_pool_requests",
    "GET /api/requests/{request_id}": "get_request_explanation",
    "GET /api/agents/{agent_id}/codex-pool/forecast": "get_codex_pool_forecast",
    "POST /api/agents/{agent_id}/codex-pool/replay": "replay_codex_pool",
    "GET /api/export": "export_configuration",
    "POST /api/import": "import_configuration",
    "GET /api/tokens": "list_tokens",
    "POST /api/tokens": "create_token",
    "DELETE /api/tokens/{token_id}": "revoke_token",
    "GET /api/audit": "list_audit",
    "GET /api/me": "who_am_i",
}


def test_operation_ids_are_stable(document: dict[str, Any]) -> None:
    by_route = {f"{m.upper()} {p}": op["operationId"] for m, p, op in _operations(document)}
    assert by_route == OPERATIONS


def test_every_api_operation_requires_the_bearer_token(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for method, path, op in _operations(document):
        assert op.get("security") == [{"HTTPBearer": []}], (method, path)
        assert "401" in op["responses"] and "403" in op["responses"], (method, path)


def test_every_operation_has_a_typed_success_answer(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        success = [code for code in op["responses"] if code.startswith("2")]
        assert success, (method, path)
        for code in success:
            if code != "204":
                assert op["responses"][code]["content"]["application/json"]["schema"], (path, code)


def test_no_response_model_carries_a_token_field(document: dict[str, Any]) -> None:
    for name, schema in document["components"]["schemas"].items():
        if name.endswith("-Input") or name in {"TokensIn", "ProviderCreate", "OverflowIn"}:
            continue
        for field in schema.get("properties", {}):
            if field in TOKEN_FIELDS:
                assert (name, field) in SHOWN_ONCE, (name, field)


def test_the_service_refuses_to_start_without_a_secret_key() -> None:
    with pytest.raises(ValueError, match="CODEXPOOL_SECRET_KEY"):
        create_app(Settings.model_validate({"CODEXPOOL_SECRET_KEY": None}))


def test_a_short_bootstrap_token_is_refused_without_being_shown() -> None:
    short = "tiny-admin-token"
    settings = Settings.model_validate(
        {
            "CODEXPOOL_SECRET_KEY": base64.b64encode(bytes(32)).decode(),
            "CODEXPOOL_ADMIN_TOKEN": short,
        }
    )
    with pytest.raises(ValueError, match="CODEXPOOL_ADMIN_TOKEN") as raised:
        create_app(settings)
    assert short not in str(raised.value)
