"""Requests to the Codex backend: which client headers travel, which are replaced.

Only an allowlist of client headers is forwarded (session and turn metadata Codex uses for
routing and caching); the provider's token and account id are set here. The client's
``Authorization``, ``Host``, cookies and anything else never reach the upstream.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from opentelemetry.util.types import AttributeValue
from starlette.types import Scope

from codexpool_shared.telemetry import attributes as attr

_FORWARD = {
    b"session_id": "session_id",
    b"session-id": "session_id",
    b"thread_id": "thread_id",
    b"thread-id": "thread_id",
    b"conversation_id": "conversation_id",
    b"x-client-request-id": "x-client-request-id",
    b"x-codex-turn-state": "x-codex-turn-state",
    b"x-codex-turn-metadata": "x-codex-turn-metadata",
    b"x-codex-window-id": "x-codex-window-id",
    b"x-codex-beta-features": "x-codex-beta-features",
    b"x-codex-installation-id": "x-codex-installation-id",
    b"x-openai-subagent": "x-openai-subagent",
    b"openai-beta": "OpenAI-Beta",
    b"version": "version",
}

_CODEX_ORIGINATORS = ("codex_", "codex-", "Codex ")

# Upstream answer headers the client may see besides ``x-codex-*``; everything else (cookies,
# cf-*, the upstream's own request id, its content type and length) stays with the router.
PASS_BACK = frozenset({b"openai-model", b"x-models-etag", b"x-reasoning-included", b"retry-after"})

_PASSED: dict[bytes, bytes | None] = {}
"""Each upstream header name seen as sent, and the lowercase name it is passed back under (None:
kept back). A stream's answer carries about twenty headers: lowering and testing each name per
request cost four times this lookup. Bounded (``_PASSED_MAX``) against an upstream that invents
header names."""
_PASSED_MAX = 1024


def _passed_name(key: bytes) -> bytes | None:
    name = key.lower()
    passed = name if name in PASS_BACK or name.startswith(b"x-codex-") else None
    if len(_PASSED) < _PASSED_MAX:
        _PASSED[key] = passed
    return passed


def passed_back(raw_headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream answer's headers the client sees, lowercase: ``PASS_BACK`` and ``x-codex-*``."""
    out: list[tuple[bytes, bytes]] = []
    for key, value in raw_headers:
        try:
            name = _PASSED[key]
        except KeyError:
            name = _passed_name(key)
        if name is not None:
            out.append((name, value))
    return out


def client_headers(scope: Scope) -> tuple[dict[str, str], str | None, str | None]:
    """The allowlisted client headers, plus the client's originator and user agent."""
    out: dict[str, str] = {}
    originator = agent = None
    for key, value in scope["headers"]:
        name = _FORWARD.get(key)
        if name is not None:
            out[name] = value.decode("latin-1")
        elif key == b"originator":
            originator = value.decode("latin-1")
        elif key == b"user-agent":
            agent = value.decode("latin-1")
    return out, originator, agent


def upstream_headers(
    forwarded: dict[str, str],
    originator: str | None,
    user_agent: str | None,
    *,
    token: str,
    account_id: str,
    default_originator: str,
    default_user_agent: str,
    request_id: str,
    accept: str = "text/event-stream",
) -> dict[str, str]:
    """The headers of a request to the Codex backend made for this client with ``token``."""
    codex_client = originator is not None and originator.startswith(_CODEX_ORIGINATORS)
    headers = {
        **forwarded,
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": accept,
        "originator": originator if codex_client and originator else default_originator,
        "User-Agent": user_agent if codex_client and user_agent else default_user_agent,
        "x-client-request-id": forwarded.get("x-client-request-id", request_id),
    }
    # codex-lb: synthetic ids (no real workspace) must not be sent as an account header.
    if account_id and not account_id.startswith(("email_", "local_")):
        headers["chatgpt-account-id"] = account_id
    return headers


def attempt_attributes(url: str) -> dict[str, AttributeValue]:
    """What every attempt's CLIENT span starts with: the GenAI system and operation, and the
    HTTP client attributes of ``url`` (without credentials, query string or fragment)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return {
        attr.GEN_AI_PROVIDER_NAME: attr.GEN_AI_OPENAI,
        attr.GEN_AI_SYSTEM: attr.GEN_AI_OPENAI,
        attr.GEN_AI_OPERATION_NAME: attr.GEN_AI_CHAT,
        attr.OPENAI_API_TYPE: attr.OPENAI_RESPONSES,
        attr.HTTP_REQUEST_METHOD: "POST",
        attr.SERVER_ADDRESS: host,
        attr.SERVER_PORT: parts.port or (443 if parts.scheme == "https" else 80),
        attr.URL_FULL: f"{parts.scheme}://{netloc}{parts.path}",
    }
