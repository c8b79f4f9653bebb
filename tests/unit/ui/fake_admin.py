"""An in-process fake of the admin API: the docs/SPEC.md section 8 shapes the UI relies on."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from codexpool_shared.errors import ApiError, error_body, install_error_handlers

ADMIN_TOKEN = "cpa_admin_fake_token"
VIEWER_TOKEN = "cpa_viewer_fake_token"
STRATEGIES = {"round-robin", "primary-first", "quota-aware"}


def _row(name: str, requests: int = 0) -> dict[str, Any]:
    return {
        "provider": name,
        "status": "active",
        "requests": requests,
        "successes": requests,
        "success_rate": 1.0 if requests else None,
        "health_score": 90.0 if requests else None,
        "health_band": "healthy" if requests else None,
        "health_components": {"success_rate": 1.0, "latency_ms_p95": 120.0, "samples": requests},
        "fallback_count": 0,
        "timeline": [
            {"t": f"2026-01-01T00:{m:02d}:00Z", "requests": 0, "successes": 0, "failures": 0,
             "fallbacks": 0}
            for m in range(60)
        ],
        "quota": None,
    }  # fmt: skip


class FakeAdmin:
    """State plus the ASGI app; tests read and poke the state directly."""

    def __init__(self) -> None:
        self.providers: dict[str, dict[str, Any]] = {
            f"chatgpt-oauth-account-{i}": {
                "name": f"chatgpt-oauth-account-{i}",
                "account_id": f"acct-{i}",
                "email": f"user{i}@example.com",
                "plan_type": "plus",
                "status": "active",
            }
            for i in (1, 2, 3)
        }
        self.agents: dict[str, dict[str, Any]] = {
            "my-agent": {"id": "my-agent", "name": "My agent"}
        }
        self.pools: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        self.overflows: dict[str, dict[str, Any]] = {}
        """Each agent's ``overflow`` block of the activity (absent: none and never had)."""
        self.calls: list[tuple[str, str, str | None]] = []
        """(method, path, bearer token) of every call, to prove what the UI sent."""
        self.forwarded_for: list[str | None] = []
        """The ``X-Forwarded-For`` of every call: the browser address the UI named."""
        self.refreshed = 0
        self.revoked: set[str] = set()
        self.device_polls: dict[str, int] = {}
        self.registering: set[str] = set()
        self.keys: dict[str, list[dict[str, Any]]] = {"my-agent": []}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.audit: list[dict[str, Any]] = []
        """Newest first, as the admin API answers."""
        self.bodies: list[Any] = []
        """The JSON body of every change, in order."""
        self.explanations: dict[str, dict[str, Any]] = {}
        """Request id -> its explanation; listed newest last-added first for every agent."""
        self.forecast: dict[str, Any] = {"agent_id": "my-agent", "providers": [],
            "pool": {"runway_s": None, "exhausts_at": None, "limited_by": None,
                     "before_reset": False}}  # fmt: skip
        tally: dict[str, Any] = {"served": 0, "limited": 0, "fallbacks": 0,
                                 "first_exhaustion_at": None, "per_provider": {}}  # fmt: skip
        self.replay: dict[str, Any] = {"requests": 0, "providers": [], "truncated": False,
            "projected": tally, "actual": tally}  # fmt: skip
        self.outage: ApiError | None = None
        """Raised by every /api call while set, as the real admin API does when Redis is down."""
        self.app = self._build()

    def row(self, name: str) -> dict[str, Any]:
        return self.rows.setdefault(name, _row(name))

    def oauth(self, name: str) -> dict[str, Any]:
        return {
            **self.providers[name],
            "access_expires_at": "2030-01-01T00:00:00Z",
            "last_refresh": None,
            "credential_version": 1,
        }

    def _build(self) -> FastAPI:
        app = FastAPI()
        install_error_handlers(app)

        def role(request: Request, *, write: bool = False) -> str:
            auth = request.headers.get("authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
            self.calls.append((request.method, request.url.path, token))
            self.forwarded_for.append(request.headers.get("x-forwarded-for"))
            if self.outage is not None:
                raise self.outage
            if token in self.revoked:
                raise ApiError(401, "invalid bearer token", code="invalid_token")
            if token == ADMIN_TOKEN:
                return "admin"
            if token == VIEWER_TOKEN:
                if write:
                    raise ApiError(403, "viewer tokens cannot change anything", code="forbidden")
                return "viewer"
            raise ApiError(401, "invalid bearer token", code="invalid_token")

        def agent_of(agent_id: str) -> dict[str, Any]:
            if agent_id not in self.agents:
                raise ApiError(
                    404,
                    f"agent {agent_id!r} does not exist",
                    code="agent_not_found",
                    param="agent_id",
                )
            return self.agents[agent_id]

        def pool_of(agent_id: str) -> dict[str, Any]:
            agent_of(agent_id)
            if agent_id not in self.pools:
                raise ApiError(404, f"pool {agent_id!r} does not exist", code="pool_not_found")
            return self.pools[agent_id]

        def activity(agent_id: str, admin: bool) -> dict[str, Any]:
            pool = pool_of(agent_id)
            rows = [self.row(name) for name in pool["providers"]]
            if admin:
                rows = [{**r, "oauth": self.oauth(r["provider"])} for r in rows]
            overflow = self.overflows.get(agent_id)
            return {**pool, "agent_id": agent_id, "providers": rows, "overflow": overflow}

        @app.get("/livez")
        async def livez() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/api/me")
        async def me(request: Request) -> dict[str, str]:
            r = role(request)
            return {"id": f"tok_{r}", "name": f"{r} person", "role": r}

        @app.get("/api/agents")
        async def agents(request: Request) -> dict[str, Any]:
            role(request)
            return {"data": list(self.agents.values())}

        @app.get("/api/agents/{agent_id}")
        async def agent(request: Request, agent_id: str) -> dict[str, Any]:
            admin = role(request) == "admin"
            keys = self.keys.get(agent_id, []) if admin else None
            return {**agent_of(agent_id), "keys": keys}

        @app.get("/api/providers")
        async def providers(request: Request) -> dict[str, Any]:
            role(request)
            return {"data": list(self.providers.values())}

        @app.put("/api/agents/{agent_id}/codex-pool")
        async def put_pool(request: Request, agent_id: str) -> Any:
            role(request, write=True)
            body = await request.json()
            agent_of(agent_id)
            pool = self.pools.setdefault(agent_id, {"strategy": "", "providers": [], "version": 0})
            if body.get("strategy") not in STRATEGIES:
                raise ApiError(422, "strategy: unknown strategy", param="strategy")
            names = body.get("providers") or []
            if not names:
                raise ApiError(
                    422, "providers: a pool needs at least one provider", param="providers"
                )
            unknown = [n for n in names if n not in self.providers]
            if unknown:
                raise ApiError(
                    422, f"providers: unknown provider {unknown[0]!r}", param="providers"
                )
            pool.update(strategy=body["strategy"], providers=names, version=pool["version"] + 1)
            return pool

        @app.delete("/api/agents/{agent_id}/codex-pool/providers/{name}", status_code=204)
        async def remove(request: Request, agent_id: str, name: str) -> None:
            role(request, write=True)
            pool = pool_of(agent_id)
            if name not in pool["providers"]:
                raise ApiError(404, f"{name!r} is not in the pool", code="not_found", param="name")
            pool["providers"].remove(name)
            pool["version"] += 1

        @app.get("/api/agents/{agent_id}/codex-pool/requests")
        async def recent_requests(request: Request, agent_id: str) -> list[dict[str, Any]]:
            role(request)
            agent_of(agent_id)
            return [
                {
                    "request_id": e["request_id"],
                    "at": e["at"],
                    "final_provider": e["final_provider"],
                    "final_outcome": e["final_outcome"],
                    "attempts": len(e["attempts"]),
                    "client_latency_ms": e["client_latency_ms"],
                }
                for e in reversed(self.explanations.values())
            ]

        @app.get("/api/agents/{agent_id}/codex-pool/forecast")
        async def get_forecast(request: Request, agent_id: str) -> dict[str, Any]:
            role(request)
            pool_of(agent_id)
            return self.forecast

        @app.post("/api/agents/{agent_id}/codex-pool/replay")
        async def post_replay(request: Request, agent_id: str) -> dict[str, Any]:
            role(request)
            pool_of(agent_id)
            body = await request.json()
            self.bodies.append(body)
            return {**self.replay, "strategy": body["strategy"]}

        @app.get("/api/requests/{request_id}")
        async def explanation(request: Request, request_id: str) -> dict[str, Any]:
            role(request)
            if request_id not in self.explanations:
                raise ApiError(404, "no such request", code="request_not_found")
            return self.explanations[request_id]

        @app.get("/api/agents/{agent_id}/codex-pool/activity")
        async def get_activity(request: Request, agent_id: str) -> dict[str, Any]:
            return activity(agent_id, admin=role(request) == "admin")

        @app.post("/api/agents/{agent_id}/codex-pool/refresh")
        async def refresh(request: Request, agent_id: str) -> dict[str, Any]:
            role(request, write=True)
            self.refreshed += 1
            for name in pool_of(agent_id)["providers"]:
                resets = 4102444800
                self.row(name)["quota"] = {
                    "primary": {"used_percent": 42.0, "window_minutes": 300, "resets_at": resets},
                    "secondary": {
                        "used_percent": 7.0,
                        "window_minutes": 10080,
                        "resets_at": resets,
                    },
                }
            return activity(agent_id, admin=True)

        @app.post("/api/providers/{name}/oauth/device")
        async def device(request: Request, name: str) -> Any:
            role(request, write=True)
            register = (await request.json() if await request.body() else {}).get("register")
            if register and name in self.providers:
                raise ApiError(409, f"provider {name!r} already exists", param="name")
            if not register and name not in self.providers:
                return JSONResponse(error_body("no such provider", type="not_found_error"), 404)
            if register:
                self.registering.add(name)
            self.device_polls[name] = 0
            return {
                "provider": name,
                "user_code": "ABCD-1234",
                "verification_uri": "http://127.0.0.1:8090/codex/device",
                "interval_s": 5,
                "expires_at": "2030-01-01T00:15:00Z",
            }

        @app.post("/api/providers/{name}/oauth/device/poll")
        async def device_poll(request: Request, name: str) -> Any:
            role(request, write=True)
            if name not in self.device_polls:
                raise ApiError(404, "no device login is pending", code="device_login_not_found")
            self.device_polls[name] += 1
            if self.device_polls[name] < 2:
                return {"status": "pending", "provider": None}
            if name in self.registering:
                self.registering.discard(name)
                self.providers[name] = {"name": name, "account_id": "acct-new", "status": "active"}
            self.providers[name]["status"] = "active"
            return {"status": "linked", "provider": self.oauth(name)}

        self._console(app, role, agent_of)
        return app

    def _console(self, app: FastAPI, role: Any, agent_of: Any) -> None:
        """Providers, agents, keys, tokens and audit: the admin console's calls."""

        async def body(request: Request) -> Any:
            payload = await request.json() if await request.body() else None
            self.bodies.append(payload)
            return payload

        @app.post("/api/providers", status_code=201)
        async def register(request: Request) -> Any:
            role(request, write=True)
            payload = await body(request)
            name = payload["name"]
            if name in self.providers:
                raise ApiError(409, f"provider {name!r} already exists", param="name")
            if "tokens" not in payload["auth_json"]:
                raise ApiError(422, "auth_json.tokens: missing", param="auth_json.tokens")
            self.providers[name] = {"name": name, "account_id": "acct-x", "status": "active"}
            return self.providers[name]

        @app.patch("/api/providers/{name}")
        async def patch(request: Request, name: str) -> Any:
            role(request, write=True)
            payload = await body(request)
            if "status" in payload:
                self.providers[name]["status"] = payload["status"]
            if "proxy_url" in payload:
                url = payload["proxy_url"]
                if url is not None and not url.startswith(("http://", "https://")):
                    raise ApiError(422, "proxy_url: unsupported scheme", param="proxy_url")
                # As the admin API: the URL without its credentials, never the URL itself.
                shown = None if url is None else url.split("://")[0] + "://" + url.split("@")[-1]
                self.providers[name]["proxy"] = shown
            return self.providers[name]

        @app.delete("/api/providers/{name}", status_code=204)
        async def delete_provider(request: Request, name: str) -> None:
            role(request, write=True)
            assert request.query_params.get("force") == "true"
            del self.providers[name]
            for pool in self.pools.values():
                if name in pool["providers"]:
                    pool["providers"].remove(name)

        @app.post("/api/agents", status_code=201)
        async def create_agent(request: Request) -> Any:
            role(request, write=True)
            payload = await body(request)
            if payload["id"] in self.agents:
                raise ApiError(409, f"agent {payload['id']!r} already exists", param="id")
            self.agents[payload["id"]] = {"id": payload["id"], "name": payload.get("name")}
            self.keys[payload["id"]] = [{"key_id": "k0", "prefix": "cpk_aaaa"}]
            return {**self.agents[payload["id"]], "api_key": "cpk_first_key_shown_once"}

        @app.delete("/api/agents/{agent_id}", status_code=204)
        async def delete_agent(request: Request, agent_id: str) -> None:
            role(request, write=True)
            agent_of(agent_id)
            del self.agents[agent_id]

        @app.patch("/api/agents/{agent_id}")
        async def patch_agent(request: Request, agent_id: str) -> Any:
            role(request, write=True)
            agent = agent_of(agent_id)
            limits = (await body(request))["limits"]
            rpm = limits.get("requests_per_minute")
            if rpm is not None and rpm < 1:
                raise ApiError(422, "must be at least 1", param="limits.requests_per_minute")
            agent["limits"] = {**agent.get("limits", {}), **limits}
            return agent

        @app.post("/api/agents/{agent_id}/keys", status_code=201)
        async def add_key(request: Request, agent_id: str) -> Any:
            role(request, write=True)
            agent_of(agent_id)
            keys = self.keys.setdefault(agent_id, [])
            revoked = [k["key_id"] for k in keys] if (await body(request))["revoke_others"] else []
            keys[:] = [k for k in keys if k["key_id"] not in revoked]
            keys.append({"key_id": f"k{len(self.bodies)}", "prefix": "cpk_bbbb"})
            return {**keys[-1], "api_key": f"cpk_new_key_{len(self.bodies)}", "revoked": revoked}

        @app.delete("/api/agents/{agent_id}/keys/{key_id}", status_code=204)
        async def revoke_key(request: Request, agent_id: str, key_id: str) -> None:
            role(request, write=True)
            keys = self.keys.get(agent_id, [])
            if key_id not in [k["key_id"] for k in keys]:
                raise ApiError(404, f"no key {key_id!r}", param="key_id")
            keys[:] = [k for k in keys if k["key_id"] != key_id]

        @app.get("/api/tokens")
        async def tokens(request: Request) -> Any:
            role(request, write=True)
            return {"data": list(self.tokens.values())}

        @app.post("/api/tokens", status_code=201)
        async def create_token(request: Request) -> Any:
            role(request, write=True)
            payload = await body(request)
            token_id = f"t{len(self.tokens) + 1}"
            self.tokens[token_id] = {**payload, "id": token_id, "created_by": "bootstrap"}
            return {**self.tokens[token_id], "token": f"cpa_secret_{token_id}"}

        @app.delete("/api/tokens/{token_id}", status_code=204)
        async def revoke_token(request: Request, token_id: str) -> None:
            role(request, write=True)
            if self.tokens.pop(token_id, None) is None:
                raise ApiError(404, f"no token {token_id!r}", param="token_id")

        @app.get("/api/audit")
        async def audit(request: Request) -> Any:
            role(request, write=True)
            limit = int(request.query_params.get("limit", "100"))
            before = request.query_params.get("before")
            ids = [e["id"] for e in self.audit]
            start = ids.index(before) + 1 if before in ids else 0
            page = self.audit[start : start + limit]
            return {"data": page, "next_before": page[-1]["id"] if len(page) == limit else None}
