"""The admin API as the UI sees it: every call carries the signed-in user's bearer token.

The UI holds no data of its own; each page is a few calls here. Errors come back as
``AdminApiError`` carrying the admin API's own ``error.message``, which the pages show as is.
Each call also names the browser's address in ``X-Forwarded-For`` (``for_client``): the admin
API limits failed authentications per address, and without it every user of the UI would share
the UI's own.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client import CollectorRegistry, Counter

JsonObject = dict[str, Any]


class AdminApiError(Exception):
    """The admin API refused a call, or did not answer (``status`` 502 then)."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def _refusal(response: httpx.Response) -> AdminApiError:
    try:
        error = response.json()["error"]
        message = str(error["message"])
    except (ValueError, KeyError, TypeError):
        message = f"the admin API answered {response.status_code} {response.reason_phrase}"
        return AdminApiError(response.status_code, message)
    return AdminApiError(
        response.status_code, message, code=error.get("code"), param=error.get("param")
    )


def _segment(value: str) -> str:
    # Names come from URLs and forms: quote them so that '/' cannot reach another route, and
    # the dots too: httpx removes a literal '.' or '..' segment (RFC 3986 dot segments), so
    # "/api/agents/." would become "/api/agents".
    return quote(value, safe="").replace(".", "%2E")


class AdminClient:
    """Typed calls to the admin API endpoints of docs/SPEC.md section 8."""

    def __init__(self, http: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        self._http = http
        self._calls = Counter(
            "codexpool_ui_admin_api_calls",
            "Calls from the UI to the admin API, by answer (2xx, 4xx, 5xx, or no answer)",
            ["answer"],
            registry=registry,
        )
        self._forwarded: dict[str, str] = {}

    def for_client(self, address: str | None) -> AdminClient:
        """This client, naming ``address`` as the browser's in every call's ``X-Forwarded-For``.

        ``address`` is the one the UI's server resolved (``request.client.host``, from proxy
        headers only when the proxy is trusted), never a header the browser sent. The copy
        shares the connection pool and the metrics, so it costs nothing per request.
        """
        bound = copy.copy(self)
        bound._forwarded = {"X-Forwarded-For": address} if address else {}
        return bound

    async def livez(self) -> None:
        response = await self._http.get("/livez")
        response.raise_for_status()

    async def _call(
        self,
        method: str,
        path: str,
        token: str,
        json: JsonObject | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method,
                path,
                json=json,
                params=params,
                headers={"Authorization": f"Bearer {token}", **self._forwarded},
            )
        except httpx.HTTPError as exc:
            self._calls.labels("none").inc()
            raise AdminApiError(
                502, f"the admin API did not answer ({type(exc).__name__}); try again shortly"
            ) from None
        self._calls.labels(f"{response.status_code // 100}xx").inc()
        if response.status_code >= 400:
            raise _refusal(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise AdminApiError(502, "the admin API answered something that is not JSON") from None

    async def me(self, token: str) -> JsonObject:
        """The token's principal: ``{"id", "name", "role"}``; 401 for a token it does not know."""
        return _object(await self._call("GET", "/api/me", token))

    async def agents(self, token: str) -> list[JsonObject]:
        return _items(await self._call("GET", "/api/agents", token))

    async def agent(self, token: str, agent_id: str) -> JsonObject:
        return _object(await self._call("GET", f"/api/agents/{_segment(agent_id)}", token))

    async def providers(self, token: str) -> list[JsonObject]:
        return _items(await self._call("GET", "/api/providers", token))

    async def activity(self, token: str, agent_id: str) -> JsonObject:
        path = f"/api/agents/{_segment(agent_id)}/codex-pool/activity"
        return _object(await self._call("GET", path, token))

    async def usage_history(self, token: str, agent_id: str) -> JsonObject:
        """The agent's hourly requests and tokens over 28 days (``total`` and per member)."""
        path = f"/api/agents/{_segment(agent_id)}/codex-pool/usage-history"
        return _object(await self._call("GET", path, token))

    async def provider_usage_history(self, token: str, name: str) -> JsonObject:
        """One provider's hourly requests and tokens over 28 days, across every pool."""
        path = f"/api/providers/{_segment(name)}/usage-history"
        return _object(await self._call("GET", path, token))

    async def recent_requests(self, token: str, agent_id: str, limit: int) -> list[JsonObject]:
        """The pool's latest requests, newest first (``GET .../codex-pool/requests``)."""
        path = f"/api/agents/{_segment(agent_id)}/codex-pool/requests"
        return _items(await self._call("GET", path, token, params={"limit": str(limit)}))

    async def request_explanation(self, token: str, request_id: str) -> JsonObject:
        """Why one request went where it went (``GET /api/requests/{request_id}``)."""
        return _object(await self._call("GET", f"/api/requests/{_segment(request_id)}", token))

    async def forecast(self, token: str, agent_id: str) -> JsonObject:
        """The pool's quota runway (``GET .../codex-pool/forecast``)."""
        path = f"/api/agents/{_segment(agent_id)}/codex-pool/forecast"
        return _object(await self._call("GET", path, token))

    async def replay(self, token: str, agent_id: str, strategy: str, since_s: int) -> JsonObject:
        """The pool's recorded requests under ``strategy``, projected beside actual."""
        path = f"/api/agents/{_segment(agent_id)}/codex-pool/replay"
        body = {"strategy": strategy, "since_s": since_s}
        return _object(await self._call("POST", path, token, json=body))

    async def refresh(self, token: str, agent_id: str) -> JsonObject:
        path = f"/api/agents/{_segment(agent_id)}/codex-pool/refresh"
        return _object(await self._call("POST", path, token))

    async def put_pool(
        self, token: str, agent_id: str, strategy: str, providers: list[str]
    ) -> JsonObject:
        path = f"/api/agents/{_segment(agent_id)}/codex-pool"
        body = {"strategy": strategy, "providers": providers}
        return _object(await self._call("PUT", path, token, json=body))

    async def remove_member(self, token: str, agent_id: str, provider: str) -> None:
        path = f"/api/agents/{_segment(agent_id)}/codex-pool/providers/{_segment(provider)}"
        await self._call("DELETE", path, token)

    async def start_device_login(
        self, token: str, provider: str, *, register: bool = False
    ) -> JsonObject:
        """Re-link ``provider``, or with ``register`` sign in a new account under that name."""
        path = f"/api/providers/{_segment(provider)}/oauth/device"
        return _object(await self._call("POST", path, token, json={"register": register}))

    async def poll_device_login(self, token: str, provider: str) -> JsonObject:
        """``{"status": "pending" | "linked", ...}``: completes the re-link once approved."""
        path = f"/api/providers/{_segment(provider)}/oauth/device/poll"
        return _object(await self._call("POST", path, token))

    async def register_provider(self, token: str, name: str, auth_json: JsonObject) -> JsonObject:
        body = {"name": name, "auth_json": auth_json}
        return _object(await self._call("POST", "/api/providers", token, json=body))

    async def set_provider_status(self, token: str, name: str, status: str) -> JsonObject:
        path = f"/api/providers/{_segment(name)}"
        return _object(await self._call("PATCH", path, token, json={"status": status}))

    async def set_provider_proxy(self, token: str, name: str, proxy_url: str | None) -> JsonObject:
        """Set (or with None remove) the provider's egress proxy; it is never read back."""
        path = f"/api/providers/{_segment(name)}"
        return _object(await self._call("PATCH", path, token, json={"proxy_url": proxy_url}))

    async def delete_provider(self, token: str, name: str) -> None:
        """Delete ``name``, removing it from every pool it is in (the page named them first)."""
        path = f"/api/providers/{_segment(name)}"
        await self._call("DELETE", path, token, params={"force": "true"})

    async def create_agent(self, token: str, agent_id: str, name: str | None) -> JsonObject:
        body: JsonObject = {"id": agent_id} if not name else {"id": agent_id, "name": name}
        return _object(await self._call("POST", "/api/agents", token, json=body))

    async def delete_agent(self, token: str, agent_id: str) -> None:
        await self._call("DELETE", f"/api/agents/{_segment(agent_id)}", token)

    async def add_key(self, token: str, agent_id: str, *, rotate: bool) -> JsonObject:
        """A new router key (shown once); ``rotate`` revokes the agent's other keys."""
        path = f"/api/agents/{_segment(agent_id)}/keys"
        return _object(await self._call("POST", path, token, json={"revoke_others": rotate}))

    async def set_limits(self, token: str, agent_id: str, limits: JsonObject) -> JsonObject:
        """Set the agent's limits (``None`` removes one)."""
        path = f"/api/agents/{_segment(agent_id)}"
        return _object(await self._call("PATCH", path, token, json={"limits": limits}))

    async def revoke_key(self, token: str, agent_id: str, key_id: str) -> None:
        path = f"/api/agents/{_segment(agent_id)}/keys/{_segment(key_id)}"
        await self._call("DELETE", path, token)

    async def tokens(self, token: str) -> list[JsonObject]:
        return _items(await self._call("GET", "/api/tokens", token))

    async def create_token(self, token: str, name: str, role: str) -> JsonObject:
        body = {"name": name, "role": role}
        return _object(await self._call("POST", "/api/tokens", token, json=body))

    async def revoke_token(self, token: str, token_id: str) -> None:
        await self._call("DELETE", f"/api/tokens/{_segment(token_id)}", token)

    async def audit(self, token: str, *, limit: int, before: str | None) -> JsonObject:
        """One page of the audit log, newest first: ``{"data": [...], "next_before": ...}``."""
        params = {"limit": str(limit)}
        if before:
            params["before"] = before
        return _object(await self._call("GET", "/api/audit", token, params=params))


def _object(payload: Any) -> JsonObject:
    if not isinstance(payload, dict):
        raise AdminApiError(502, "the admin API answered an unexpected shape")
    return payload


def _items(payload: Any) -> list[JsonObject]:
    # A bare list, or the {"data": [...]} envelope the admin API uses for listings.
    items = payload.get("data") if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise AdminApiError(502, "the admin API answered an unexpected shape")
    return items
