"""The backend's read-only routes: usage (§6), models (§7) and routing discovery (§13)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from codexpool_sim.accounts import FREE_MODELS, PAID_MODELS, Account
from codexpool_sim.backend import MODELS_ETAG, admit
from codexpool_sim.jsonresp import OrjsonResponse
from codexpool_sim.state import Sim

PAID_PLANS = ["plus", "pro", "team", "business", "enterprise", "edu"]
Handler = Callable[[Request, Account], Awaitable[Response]]


def model_info(slug: str, priority: int) -> dict[str, Any]:
    return {
        "slug": slug,
        "display_name": slug,
        "description": f"{slug}, served by codex-sim",
        "default_reasoning_level": "medium",
        "supported_reasoning_levels": [
            {"effort": e, "description": e} for e in ("low", "medium", "high")
        ],
        "shell_type": "shell_command",
        "visibility": "list",
        "minimal_client_version": "0.1.0",
        "supported_in_api": True,
        "priority": priority,
        "upgrade": None,
        "base_instructions": "You are Codex, a coding agent.",
        "supports_reasoning_summaries": True,
        "support_verbosity": True,
        "default_verbosity": "low",
        "apply_patch_tool_type": "freeform",
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "supports_parallel_tool_calls": True,
        "context_window": 272000,
        "experimental_supported_tools": [],
        "input_modalities": ["text", "image"],
        "available_in_plans": (["free"] if slug in FREE_MODELS else []) + PAID_PLANS,
        "prefer_websockets": False,
    }


def _authenticated(sim: Sim, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        scope = request.scope
        body = await request.body()
        rec = sim.recorder.record(
            request.method,
            scope["path"],
            scope["query_string"],
            scope["headers"],
            body,
            sim.clock.now(),
        )
        account, status, problem = admit(sim, scope, rec)
        rec.status = status
        if account is None:
            return OrjsonResponse(problem, status_code=status)
        return await handler(request, account)

    return endpoint


def info_routes(sim: Sim) -> list[Route]:
    async def usage(request: Request, account: Account) -> Response:
        now = sim.clock.now()
        account.quota.roll(now)
        return OrjsonResponse(account.quota.usage_document(account.plan_type, now))

    async def models(request: Request, account: Account) -> Response:
        slugs = account.allowed_models or (
            FREE_MODELS if account.plan_type == "free" else PAID_MODELS
        )
        document = {"models": [model_info(slug, i) for i, slug in enumerate(slugs)]}
        return OrjsonResponse(document, headers={"etag": MODELS_ETAG.decode()})

    async def accounts_check(request: Request, account: Account) -> Response:
        origin = sim.workspace_backend_origin or f"{request.url.scheme}://{request.url.netloc}"
        entry = {
            "id": account.account_id,
            "workspace_backend_origin": origin,
            "account_routing_override": "us",
        }
        return OrjsonResponse({"accounts": [entry], "default_account_id": account.account_id})

    return [
        Route("/backend-api/wham/usage", _authenticated(sim, usage)),
        Route("/api/codex/usage", _authenticated(sim, usage)),
        Route("/backend-api/codex/models", _authenticated(sim, models)),
        Route("/backend-api/wham/accounts/check", _authenticated(sim, accounts_check)),
    ]
