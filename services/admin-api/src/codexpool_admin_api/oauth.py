"""Device-code login against the OAuth issuer (docs/reference/codex-backend-protocol.md 2.1).

Re-linking a provider: ``start`` asks the issuer for a user code that an admin enters at the
issuer's device page; ``poll`` asks whether it was approved and, once it was, exchanges the
authorization code for tokens. No step retries on its own: the authorization code is single-use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from codexpool_shared.errors import ApiError
from codexpool_shared.oauth import CODEX_CLIENT_ID


@dataclass(frozen=True, slots=True)
class DeviceStart:
    device_auth_id: str
    user_code: str
    interval_s: int
    expires_in_s: int


@dataclass(frozen=True, slots=True)
class LinkedTokens:
    id_token: str | None
    access_token: str
    refresh_token: str


class DeviceFlow:
    def __init__(self, http: httpx.AsyncClient, issuer: str) -> None:
        self._http = http
        self._issuer = issuer.rstrip("/")

    @property
    def verification_uri(self) -> str:
        return f"{self._issuer}/codex/device"

    async def start(self) -> DeviceStart:
        response = await self._send(
            "/api/accounts/deviceauth/usercode", json={"client_id": CODEX_CLIENT_ID}
        )
        body = _json(response, ok=(200,))
        user_code = body.get("user_code") or body.get("usercode")
        device_auth_id = body.get("device_auth_id")
        if not isinstance(user_code, str) or not isinstance(device_auth_id, str):
            raise _bad_gateway("the OAuth issuer's device-code answer lacks its codes")
        return DeviceStart(
            device_auth_id=device_auth_id,
            user_code=user_code,
            interval_s=_int(body.get("interval"), 5),
            expires_in_s=_int(body.get("expires_in"), 900),
        )

    async def poll(self, device_auth_id: str, user_code: str) -> LinkedTokens | None:
        """The new tokens once the code is approved; ``None`` while it is still pending."""
        response = await self._send(
            "/api/accounts/deviceauth/token",
            json={"device_auth_id": device_auth_id, "user_code": user_code},
        )
        if response.status_code in (403, 404):
            return None
        grant = _json(response, ok=(200,))
        code, verifier = grant.get("authorization_code"), grant.get("code_verifier")
        if not isinstance(code, str) or not isinstance(verifier, str):
            raise _bad_gateway("the OAuth issuer's device grant lacks the authorization code")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": f"{self._issuer}/deviceauth/callback",
            "client_id": CODEX_CLIENT_ID,
            "code_verifier": verifier,
        }
        tokens = _json(await self._send("/oauth/token", data=form), ok=(200,))
        access, refresh = tokens.get("access_token"), tokens.get("refresh_token")
        if not isinstance(access, str) or not isinstance(refresh, str):
            raise _bad_gateway("the OAuth issuer returned no tokens")
        id_token = tokens.get("id_token")
        return LinkedTokens(
            id_token=id_token if isinstance(id_token, str) else None,
            access_token=access,
            refresh_token=refresh,
        )

    async def _send(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.post(self._issuer + path, **kwargs)
        except httpx.HTTPError as exc:
            # The exception text may hold the URL and never holds tokens; only its kind is shown.
            raise _bad_gateway(f"the OAuth issuer is unreachable ({type(exc).__name__})") from None


def _json(response: httpx.Response, *, ok: tuple[int, ...]) -> dict[str, Any]:
    if response.status_code not in ok:
        # Upstream bodies are not reflected: they may echo codes or tokens.
        raise _bad_gateway(f"the OAuth issuer answered {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise _bad_gateway("the OAuth issuer answered with malformed JSON") from None
    if not isinstance(body, dict):
        raise _bad_gateway("the OAuth issuer answered with malformed JSON")
    return body


def _int(value: object, default: int) -> int:
    return int(value) if isinstance(value, int | float) and value > 0 else default


def _bad_gateway(message: str) -> ApiError:
    return ApiError(502, message, code="upstream_error", type="upstream_error")
