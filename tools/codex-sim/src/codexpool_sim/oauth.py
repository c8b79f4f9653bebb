"""The OAuth issuer (reference §2, §10): refresh with single-use rotation, revoke, device login."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from codexpool_sim import errors
from codexpool_sim.accounts import Account
from codexpool_sim.device import DEVICE_CALLBACK_PATH
from codexpool_sim.faults import FaultKind, FaultSpec
from codexpool_sim.jsonresp import OrjsonResponse
from codexpool_sim.recording import Recorded
from codexpool_sim.state import Sim
from codexpool_sim.tokens import CLIENT_ID, RefreshError, TokenSet

SCOPE = "openid profile email offline_access"


def _params(request: Request, body: bytes) -> dict[str, Any] | None:
    """Token endpoint parameters, JSON or form encoded."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return dict(parse_qsl(body.decode("utf-8", "replace")))


def _error(status: int, code: str, message: str) -> Response:
    return OrjsonResponse(errors.envelope(code, message), status_code=status)


async def _stall(request: Request, duration_ms: int) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration_ms / 1000
    while loop.time() < deadline:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(0.02)
    return False


class Issuer:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    async def _record(self, request: Request) -> tuple[Recorded, bytes]:
        body = await request.body()
        scope = request.scope
        rec = self.sim.recorder.record(
            request.method,
            scope["path"],
            scope["query_string"],
            scope["headers"],
            body,
            self.sim.clock.now(),
        )
        return rec, body

    def _granted(
        self, account: Account, tokens: TokenSet, *, with_id_token: bool = True
    ) -> Response:
        document: dict[str, Any] = {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "token_type": "bearer",
            "expires_in": self.sim.tokens.access_ttl_s,
            "scope": SCOPE,
        }
        if with_id_token:
            document["id_token"] = tokens.id_token
        return OrjsonResponse(document)

    async def token(self, request: Request) -> Response:
        rec, body = await self._record(request)
        params = _params(request, body)
        response = await self._token(request, rec, params)
        rec.status = response.status_code
        return response

    async def _token(
        self, request: Request, rec: Recorded, params: dict[str, Any] | None
    ) -> Response:
        if params is None:
            return _error(400, "invalid_request", "The request body could not be parsed.")
        if params.get("client_id", CLIENT_ID) != CLIENT_ID:
            return _error(401, "invalid_client", "Unknown client_id.")
        grant = params.get("grant_type")
        if grant == "refresh_token":
            return await self._refresh(request, rec, params.get("refresh_token"))
        if grant == "authorization_code":
            return self._exchange(rec, params)
        return _error(400, "unsupported_grant_type", f"Unsupported grant_type: {grant!r}.")

    async def _refresh(self, request: Request, rec: Recorded, refresh_token: Any) -> Response:
        sim = self.sim
        if not isinstance(refresh_token, str) or not refresh_token:
            return _error(400, "invalid_request", "Invalid 'refresh_token': empty string.")
        record = sim.tokens.refresh_record(refresh_token)
        account = sim.accounts.get(record.account_id) if record is not None else None
        rec.account_id = account.account_id if account is not None else None
        fault: FaultSpec | None = (
            account.faults.take(sim.rng, refresh=True) if account is not None else None
        )
        if fault is not None:
            rec.fault = fault.kind.value
            if fault.kind is FaultKind.REFRESH_ERROR:
                body = errors.envelope(
                    fault.code or "server_error",
                    fault.message or "Internal server error.",
                    "server_error",
                )
                return OrjsonResponse(body, status_code=fault.status)
        try:
            sim.tokens.redeem(refresh_token)
        except RefreshError as refused:
            return OrjsonResponse(errors.refresh_error(refused.code), status_code=401)
        assert account is not None
        tokens = sim.issue_tokens(account)
        if fault is not None and fault.kind is FaultKind.REFRESH_STALL_AFTER_ROTATION:
            # The hazard of §2.2: the old token is already dead when the client gives up.
            await _stall(request, fault.duration_ms)
        return self._granted(account, tokens, with_id_token=not account.omit_id_token)

    def _exchange(self, rec: Recorded, params: dict[str, Any]) -> Response:
        sim = self.sim
        code = sim.devices.auth_codes.get(str(params.get("code", "")))
        if code is None or code.used or code.expires_at <= sim.clock.now():
            return _error(400, "invalid_grant", "Invalid or expired authorization code.")
        verifier = params.get("code_verifier")
        if verifier is not None and verifier != code.code_verifier:
            return _error(400, "invalid_grant", "code_verifier does not match.")
        redirect_uri = str(params.get("redirect_uri", DEVICE_CALLBACK_PATH))
        if not redirect_uri.endswith(DEVICE_CALLBACK_PATH):
            return _error(400, "invalid_grant", "redirect_uri does not match the device login.")
        code.used = True
        account = sim.accounts[code.account_id]
        rec.account_id = account.account_id
        return self._granted(account, sim.issue_tokens(account))

    async def revoke(self, request: Request) -> Response:
        rec, body = await self._record(request)
        params = _params(request, body) or {}
        token = params.get("token")
        if isinstance(token, str):
            self.sim.tokens.revoke(token)
        rec.status = 200
        return OrjsonResponse({})

    async def device_usercode(self, request: Request) -> Response:
        rec, _ = await self._record(request)
        now = self.sim.clock.now()
        device = self.sim.devices.start(now)
        rec.status = 200
        expires = datetime.fromtimestamp(device.expires_at, UTC).isoformat().replace("+00:00", "Z")
        return OrjsonResponse(
            {
                "device_auth_id": device.device_auth_id,
                "user_code": device.user_code,
                "usercode": device.user_code,
                "interval": self.sim.device_interval_s,
                "expires_in": int(device.expires_at - now),
                "expires_at": expires,
            }
        )

    async def device_token(self, request: Request) -> Response:
        rec, body = await self._record(request)
        response = self._device_token(_params(request, body) or {})
        rec.status = response.status_code
        return response

    def _device_token(self, params: dict[str, Any]) -> Response:
        sim = self.sim
        device = sim.devices.by_id.get(str(params.get("device_auth_id", "")))
        if device is None or device.redeemed or device.user_code != params.get("user_code"):
            return _error(404, "deviceauth_not_found", "Unknown device authorization.")
        if device.expires_at <= sim.clock.now():
            return _error(400, "expired_token", "The device code has expired.")
        if device.account_id is None:
            return _error(403, "deviceauth_authorization_pending", "Authorization is pending.")
        code, verifier = sim.devices.grant(device, sim.clock.now())
        return OrjsonResponse({"authorization_code": code, "code_verifier": verifier})


def oauth_routes(sim: Sim) -> list[Route]:
    issuer = Issuer(sim)
    return [
        Route("/oauth/token", issuer.token, methods=["POST"]),
        Route("/oauth/revoke", issuer.revoke, methods=["POST"]),
        Route("/api/accounts/deviceauth/usercode", issuer.device_usercode, methods=["POST"]),
        Route("/api/accounts/deviceauth/token", issuer.device_token, methods=["POST"]),
    ]
