"""The ``/_sim`` admin endpoint (docs/SPEC.md §10): accounts, faults, recordings, clock, knobs."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from codexpool_sim.accounts import Account
from codexpool_sim.admin_models import (
    AccountPatch,
    ClockPatch,
    ConfigPatch,
    DeviceApproval,
    NewAccount,
    apply_config,
    apply_patch,
)
from codexpool_sim.faults import FaultSpec
from codexpool_sim.jsonresp import OrjsonResponse
from codexpool_sim.state import Sim

M = TypeVar("M", bound=BaseModel)


class BadRequest(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


async def _body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    try:
        return model.model_validate(orjson.loads(raw or b"{}"))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, "body is not JSON") from exc
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors()
        ]
        raise BadRequest(400, problems) from exc


def account_view(sim: Sim, account: Account) -> dict[str, Any]:
    now = sim.clock.now()
    quota = account.quota
    quota.roll(now)
    access = sim.tokens.access(account.tokens.access_token)
    stats = sim.tokens.stats[account.account_id]
    return {
        "name": account.name,
        "account_id": account.account_id,
        "email": account.email,
        "user_id": account.user_id,
        "plan_type": account.plan_type,
        "quota": {
            "primary": quota.primary.admin_view(now),
            "secondary": None if quota.secondary is None else quota.secondary.admin_view(now),
            "limit_reached": bool(quota.exhausted()),
            "primary_cost_percent": quota.primary_cost,
            "secondary_cost_percent": quota.secondary_cost,
            "credits": quota.credits.view(),
        },
        "ttfb_ms": account.ttfb_ms,
        "event_delay_ms": account.event_delay_ms,
        "response_text": account.style.response_text,
        "reasoning": account.style.reasoning,
        "function_call": account.style.function_call,
        "codex_empty_output": account.style.codex_empty_output,
        "usage": account.style.usage.view(),
        "omit_id_token": account.omit_id_token,
        "allowed_models": list(account.allowed_models),
        "requests": account.requests,
        "access_expires_at": None if access is None else access.expires_at,
        "access_token_usable": access is not None
        and not access.revoked
        and access.expires_at > now,
        "refresh": stats.view(),
        "faults": account.faults.views(),
    }


def admin_routes(sim: Sim) -> list[Route]:
    def find(request: Request) -> Account:
        key = request.path_params["account_id"]
        account = sim.accounts.get(key) or next(
            (a for a in sim.accounts.values() if a.name == key), None
        )
        if account is None:
            raise BadRequest(404, f"unknown account {key!r}")
        return account

    def handled(endpoint: Any) -> Any:
        async def run(request: Request) -> Response:
            try:
                result = await endpoint(request)
            except BadRequest as problem:
                return OrjsonResponse({"detail": problem.detail}, status_code=problem.status)
            if isinstance(result, Response):
                return result
            return OrjsonResponse(result)

        return run

    async def list_accounts(request: Request) -> Any:
        return {"accounts": [account_view(sim, a) for a in sim.accounts.values()]}

    async def create_account(request: Request) -> Any:
        account = sim.add_account((await _body(request, NewAccount)).plan_type)
        return OrjsonResponse(
            {**account_view(sim, account), "auth_json": account.auth_json()}, status_code=201
        )

    async def patch_all(request: Request) -> Any:
        patch = await _body(request, AccountPatch)
        for account in sim.accounts.values():
            apply_patch(sim, account, patch)
        return await list_accounts(request)

    async def get_account(request: Request) -> Any:
        return account_view(sim, find(request))

    async def patch_account(request: Request) -> Any:
        account = find(request)
        apply_patch(sim, account, await _body(request, AccountPatch))
        return account_view(sim, account)

    async def get_auth(request: Request) -> Any:
        return find(request).auth_json()

    async def list_faults(request: Request) -> Any:
        return {"faults": find(request).faults.views()}

    async def add_fault(request: Request) -> Any:
        account = find(request)
        fault = account.faults.add(await _body(request, FaultSpec))
        return OrjsonResponse(fault.view(), status_code=201)

    async def clear_faults(request: Request) -> Any:
        find(request).faults.clear()
        return {"faults": []}

    async def list_requests(request: Request) -> Any:
        q = request.query_params
        limit = int(q["limit"]) if q.get("limit", "").lstrip("-").isdigit() else None
        return {
            "requests": sim.recorder.views(
                account_id=q.get("account_id"), path=q.get("path"), limit=limit
            )
        }

    async def clear_requests(request: Request) -> Any:
        return {"cleared": sim.recorder.clear()}

    async def refreshes(request: Request) -> Any:
        return {"accounts": {aid: stats.view() for aid, stats in sim.tokens.stats.items()}}

    def clock_view() -> dict[str, Any]:
        return {"now": sim.clock.now(), "frozen": sim.clock.frozen}

    async def get_clock(request: Request) -> Any:
        return clock_view()

    async def set_clock(request: Request) -> Any:
        patch = await _body(request, ClockPatch)
        if patch.frozen is True:
            sim.clock.freeze()
        elif patch.frozen is False:
            sim.clock.unfreeze()
        if patch.set_now is not None:
            sim.clock.set(patch.set_now)
        if patch.advance_s is not None:
            sim.clock.advance(patch.advance_s)
        return clock_view()

    def config_view() -> dict[str, Any]:
        return {
            **vars(sim.validation),
            "account_id_mismatch": sim.mismatch.value,
            "reuse_revokes_family": sim.tokens.reuse_revokes_family,
            "workspace_backend_origin": sim.workspace_backend_origin,
            "device_interval_s": sim.device_interval_s,
        }

    async def get_config(request: Request) -> Any:
        return config_view()

    async def patch_config(request: Request) -> Any:
        apply_config(sim, await _body(request, ConfigPatch))
        return config_view()

    async def device_codes(request: Request) -> Any:
        now = sim.clock.now()
        return {"device_codes": [d.view(now) for d in sim.devices.by_id.values()]}

    async def approve_device(request: Request) -> Any:
        approval = await _body(request, DeviceApproval)
        device = sim.devices.by_user_code(request.path_params["user_code"])
        if device is None:
            raise BadRequest(404, "unknown user_code")
        if approval.account_id not in sim.accounts:
            raise BadRequest(400, [{"field": "account_id", "message": "unknown account"}])
        device.account_id = approval.account_id
        return device.view(sim.clock.now())

    routes = [
        ("/_sim/accounts", list_accounts, "GET"),
        ("/_sim/accounts", create_account, "POST"),
        ("/_sim/accounts", patch_all, "PATCH"),
        ("/_sim/accounts/{account_id}", get_account, "GET"),
        ("/_sim/accounts/{account_id}", patch_account, "PATCH"),
        ("/_sim/accounts/{account_id}/auth", get_auth, "GET"),
        ("/_sim/accounts/{account_id}/faults", list_faults, "GET"),
        ("/_sim/accounts/{account_id}/faults", add_fault, "POST"),
        ("/_sim/accounts/{account_id}/faults", clear_faults, "DELETE"),
        ("/_sim/requests", list_requests, "GET"),
        ("/_sim/requests", clear_requests, "DELETE"),
        ("/_sim/refreshes", refreshes, "GET"),
        ("/_sim/clock", get_clock, "GET"),
        ("/_sim/clock", set_clock, "POST"),
        ("/_sim/config", get_config, "GET"),
        ("/_sim/config", patch_config, "PATCH"),
        ("/_sim/device-codes", device_codes, "GET"),
        ("/_sim/device-codes/{user_code}/approve", approve_device, "POST"),
    ]
    return [Route(path, handled(fn), methods=[method]) for path, fn, method in routes]
