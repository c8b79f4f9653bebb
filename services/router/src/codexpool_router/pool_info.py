"""``/v1/usage``, ``/backend-api/wham/usage`` and the models routes (off the hot path).

The usage document has the shape of the upstream's ``/wham/usage`` (protocol section 6), but
describes the whole pool: a window's ``used_percent`` is the mean over the active members (an
account cooling down for quota counts as 100 %), its reset is the earliest member reset, and
``limit_reached`` is true only when no member has quota left. ``providers`` lists each member.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from fastapi import APIRouter, Request, Response
from redis.exceptions import RedisError

from codexpool_router.core import Core
from codexpool_router.inbound import agent_key_digest
from codexpool_shared.errors import ApiError
from codexpool_shared.store import (
    LiveState,
    NotFound,
    Provider,
    get_live,
    get_pool,
    get_provider,
    read_credentials,
)

CLIENT_VERSION = "0.169.0"


async def _pool_members(
    core: Core, request: Request
) -> tuple[str, list[Provider], list[LiveState]]:
    digest = agent_key_digest({"headers": request.scope["headers"]})
    try:
        agent = await core.redis.get(core.keys.api_key(digest))
        if agent is None:
            raise ApiError(401, "Incorrect agent key provided.", code="invalid_api_key")
        agent_id = agent.decode() if isinstance(agent, bytes) else str(agent)
        try:
            pool = await get_pool(core.redis, core.keys, agent_id)
        except NotFound:
            raise ApiError(404, f"Agent {agent_id!r} has no pool.", code="no_pool") from None
        providers, lives = [], []
        for name in pool.providers:
            try:
                providers.append(await get_provider(core.redis, core.keys, name))
            except NotFound:
                continue
            lives.append(await get_live(core.redis, core.keys, name))
    except (RedisError, OSError) as exc:
        core.metrics.store_errors.inc()
        raise ApiError(503, "The pool store is unreachable.", code="store_unavailable") from exc
    return agent_id, providers, lives


def _window(lives: list[LiveState], which: str, now: float) -> dict[str, Any] | None:
    used: list[float] = []
    resets: list[int] = []
    minutes: list[int] = []
    for live in lives:
        quota = live.quota
        window = getattr(quota, which) if quota else None
        cooling = live.cooldown_reason == "usage_limit" and live.cooldown_until_ms > now * 1000
        if window is None and not cooling:
            used.append(0.0)
            continue
        used.append(min(100.0, window.used_percent) if window else 100.0)
        if window is not None and window.resets_at:
            resets.append(window.resets_at)
        if window is not None and window.window_minutes:
            minutes.append(window.window_minutes)
    if not used or (not resets and not minutes and not any(used)):
        return None
    reset_at = min(resets) if resets else None
    return {
        "used_percent": round(sum(used) / len(used)),
        "limit_window_seconds": max(minutes) * 60 if minutes else None,
        "reset_after_seconds": max(0, math.ceil(reset_at - now)) if reset_at else None,
        "reset_at": reset_at,
    }


def usage_document(providers: list[Provider], lives: list[LiveState]) -> dict[str, Any]:
    now = time.time()
    active = [(p, lv) for p, lv in zip(providers, lives, strict=True) if p.status == "active"]
    live_active = [lv for _, lv in active]

    def exhausted(live: LiveState) -> bool:
        if live.cooldown_reason == "usage_limit" and live.cooldown_until_ms > now * 1000:
            return True
        q = live.quota
        return bool(q and any(w and w.used_percent >= 100 for w in (q.primary, q.secondary)))

    limit_reached = all(exhausted(lv) for lv in live_active)
    plans = {p.plan_type for p, _ in active if p.plan_type}
    return {
        "plan_type": plans.pop() if len(plans) == 1 else "pool",
        "rate_limit": {
            "allowed": not limit_reached,
            "limit_reached": limit_reached,
            "primary_window": _window(live_active, "primary", now),
            "secondary_window": _window(live_active, "secondary", now),
        },
        "credits": None,
        "additional_rate_limits": [],
        "rate_limit_reached_type": "rate_limit_reached" if limit_reached else None,
        "providers": [
            {
                "provider": p.name,
                "status": p.status,
                "plan_type": p.plan_type,
                "quota": lv.quota.model_dump() if lv.quota else None,
                "cooldown_until_ms": lv.cooldown_until_ms or None,
                "cooldown_reason": lv.cooldown_reason,
            }
            for p, lv in zip(providers, lives, strict=True)
        ],
    }


async def _upstream_models(core: Core, providers: list[Provider]) -> tuple[int, bytes]:
    for provider in providers:
        if provider.status != "active":
            continue
        creds = await read_credentials(core.redis, core.keys, provider.name)
        token = core.tokens.access_token(provider.name, creds.access_token)
        headers = {
            "Authorization": f"Bearer {token}",
            "chatgpt-account-id": creds.account_id,
            "originator": core.settings.originator,
            "User-Agent": core.settings.user_agent,
        }
        url = core.settings.upstream_base_url.rstrip("/") + "/codex/models"
        try:
            async with core.session.get(
                url,
                params={"client_version": CLIENT_VERSION},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=core.settings.ttfb_timeout_s),
            ) as resp:
                body = await resp.read()
                if resp.status == 200:
                    return 200, body
        except (aiohttp.ClientError, TimeoutError):
            continue
    raise ApiError(503, "No provider could list models.", code="no_eligible_provider")


def info_router(core: Callable[[], Core]) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    async def usage(request: Request) -> dict[str, Any]:
        _, providers, lives = await _pool_members(core(), request)
        return usage_document(providers, lives)

    router.add_api_route("/v1/usage", usage, methods=["GET"])
    router.add_api_route("/backend-api/wham/usage", usage, methods=["GET"])

    @router.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        _, providers, _ = await _pool_members(core(), request)
        _, body = await _upstream_models(core(), providers)
        slugs = [m.get("slug") for m in orjson.loads(body).get("models", []) if isinstance(m, dict)]
        return {
            "object": "list",
            "data": [
                {"id": s, "object": "model", "created": 0, "owned_by": "openai"} for s in slugs if s
            ],
        }

    @router.get("/backend-api/codex/models")
    async def codex_models(request: Request) -> Response:
        _, providers, _ = await _pool_members(core(), request)
        status, body = await _upstream_models(core(), providers)
        return Response(body, status_code=status, media_type="application/json")

    return router
