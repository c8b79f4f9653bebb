"""The OAuth issuer's refresh grant: the one exchange every service spends refresh tokens with.

docs/reference/codex-backend-protocol.md sections 2.2 and 2.4: a JSON ``refresh_token`` grant
POSTed to ``<issuer>/oauth/token``. A 200 carrying an access token is :class:`Refreshed`; a 401,
or one of the :data:`PERMANENT` error codes, is :class:`Refused` (only a new login fixes it);
anything else (another status, malformed JSON, no answer) is :class:`Transient`.

The HTTP client stays the caller's, behind :class:`TokenTransport` ("POST JSON, get the status
and the body"): the router keeps the aiohttp session it measured on its hot path, the admin API
its httpx client. Each gets a three-line adapter here, so the request, the parsing of the answer
and its classification exist once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import httpx

CODEX_CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
"""The Codex CLI's public OAuth client id (docs/reference/codex-backend-protocol.md section 2)."""

PERMANENT = frozenset(
    {
        "refresh_token_expired",
        "refresh_token_reused",
        "refresh_token_invalidated",
        "invalid_grant",
        "token_invalidated",
        "token_expired",
        "app_session_terminated",
        "account_session_expired",
    }
)
"""codex-lb's list of refresh failures that only a new login can fix (protocol 2.4)."""


class TransportError(Exception):
    """The issuer gave no answer (connection refused or reset, timeout).

    The message is the client library's exception type, never a URL or a token.
    """


class TokenTransport(Protocol):
    """What the exchange needs from an HTTP client library.

    POST a JSON body, return the answer's status and raw body.
    """

    async def post_json(
        self, url: str, body: Mapping[str, str], *, headers: Mapping[str, str], timeout_s: float
    ) -> tuple[int, bytes]:
        """The status and body of the answer.

        Raises:
            TransportError: No answer within ``timeout_s``, or none at all.
        """
        ...


@dataclass(frozen=True, slots=True)
class AiohttpTransport:
    """:class:`TokenTransport` on an aiohttp session (the router's)."""

    session: aiohttp.ClientSession

    async def post_json(
        self, url: str, body: Mapping[str, str], *, headers: Mapping[str, str], timeout_s: float
    ) -> tuple[int, bytes]:
        """See :class:`TokenTransport`."""
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self.session.post(
                url, json=dict(body), headers=dict(headers), timeout=timeout
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(type(exc).__name__) from exc


@dataclass(frozen=True, slots=True)
class HttpxTransport:
    """:class:`TokenTransport` on an httpx client (the admin API's)."""

    client: httpx.AsyncClient

    async def post_json(
        self, url: str, body: Mapping[str, str], *, headers: Mapping[str, str], timeout_s: float
    ) -> tuple[int, bytes]:
        """See :class:`TokenTransport`."""
        try:
            response = await self.client.post(
                url, json=dict(body), headers=dict(headers), timeout=timeout_s
            )
        except httpx.HTTPError as exc:
            raise TransportError(type(exc).__name__) from exc
        return response.status_code, response.content


@dataclass(frozen=True, slots=True)
class Refreshed:
    """The issuer's new tokens; it may leave out the refresh token or the id token."""

    access_token: str
    refresh_token: str | None
    id_token: str | None

    def as_fields(self) -> dict[str, str | None]:
        """The tokens by stored field name (``store.write_tokens`` keeps absent ones)."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
        }


@dataclass(frozen=True, slots=True)
class Refused:
    """A refusal only a new login fixes: the provider needs re-linking."""

    reason: str
    """The issuer's error code, or ``http_<status>``."""


@dataclass(frozen=True, slots=True)
class Transient:
    """No usable answer this time; a later refresh may succeed with the same refresh token."""

    reason: str
    """``http_<status>``, ``malformed_answer`` or ``unreachable (<exception type>)``."""


RefreshAnswer = Refreshed | Refused | Transient


def refresh_grant(refresh_token: str, client_id: str = CODEX_CLIENT_ID) -> dict[str, str]:
    """The JSON body of a ``refresh_token`` grant."""
    return {"client_id": client_id, "grant_type": "refresh_token", "refresh_token": refresh_token}


def error_code(doc: Any) -> str | None:
    """The error code of an OAuth error answer, whichever of its shapes it takes.

    Args:
        doc: The decoded JSON body of the answer (anything).

    Returns:
        ``error.code`` (or ``error.type``), a string ``error``, or a top-level ``code``.
    """
    if not isinstance(doc, dict):
        return None
    error = doc.get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return str(code) if code else None
    if isinstance(error, str):
        return error
    code = doc.get("code")
    return str(code) if code else None


def classify(status: int, body: bytes) -> RefreshAnswer:
    """What an answer of the token endpoint means (protocol 2.4).

    Args:
        status: The HTTP status.
        body: The raw body (JSON, or anything when the issuer or a proxy misbehaves).

    Returns:
        :class:`Refreshed`, :class:`Refused` or :class:`Transient`.
    """
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if status == 200 and isinstance(doc, dict) and isinstance(doc.get("access_token"), str):
        return Refreshed(
            access_token=doc["access_token"],
            refresh_token=_text(doc.get("refresh_token")),
            id_token=_text(doc.get("id_token")),
        )
    code = error_code(doc)
    if status == 401 or code in PERMANENT:
        return Refused(code or f"http_{status}")
    return Transient("malformed_answer" if status == 200 else f"http_{status}")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class TokenExchange:
    """Spends a refresh token at the issuer: the request, the parsing and the classification.

    Args:
        transport: The HTTP client to send it with.
        auth_base_url: The issuer (``CODEXPOOL_AUTH_BASE_URL``); the grant goes to
            ``<this>/oauth/token``.
        timeout_s: Deadline of one exchange; the refresh lock must outlive it
            (``store.TokenRefresher`` checks).
        headers: Sent with the grant (``originator``, ``User-Agent``).
        client_id: The OAuth client the refresh token was issued to.
    """

    transport: TokenTransport
    auth_base_url: str
    timeout_s: float
    headers: Mapping[str, str] = field(default_factory=dict)
    client_id: str = CODEX_CLIENT_ID

    async def __call__(self, refresh_token: str) -> RefreshAnswer:
        """Spend ``refresh_token`` once (never retried: it is single-use, protocol 2.2)."""
        url = self.auth_base_url.rstrip("/") + "/oauth/token"
        try:
            status, body = await self.transport.post_json(
                url,
                refresh_grant(refresh_token, self.client_id),
                headers=self.headers,
                timeout_s=self.timeout_s,
            )
        except TransportError as exc:
            return Transient(f"unreachable ({exc})")
        return classify(status, body)
