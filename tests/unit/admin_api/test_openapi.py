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


def test_operation_ids_are_the_stable_function_names(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(document)]
    assert len(ids) == len(set(ids))
    by_route = {f"{m.upper()} {p}": op["operationId"] for m, p, op in _operations(document)}
    assert by_route["PUT /api/agents/{agent_id}/codex-pool"] == "put_codex_pool"
    assert by_route["POST /api/providers"] == "register_new_provider"
    assert by_route["POST /api/agents/{agent_id}/codex-pool/refresh"] == (
        "refresh_codex_pool_live_state"
    )


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
        if name.endswith("-Input") or name in {"TokensIn", "ProviderCreate"}:
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
