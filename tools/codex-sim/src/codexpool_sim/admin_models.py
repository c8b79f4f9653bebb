"""Bodies of the ``/_sim`` admin endpoints and how an account patch is applied."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from codexpool_sim.accounts import Account
from codexpool_sim.config import MismatchPolicy
from codexpool_sim.quota import Window, plan_windows
from codexpool_sim.state import Sim
from codexpool_sim.tokens import RefreshState

_STRICT = ConfigDict(extra="forbid")
Percent = Field(default=None, ge=0.0, le=100.0)
NonNegative = Field(default=None, ge=0)


class UsagePatch(BaseModel):
    model_config = _STRICT
    input_tokens: int | None = NonNegative
    cached_tokens: int | None = NonNegative
    output_tokens: int | None = NonNegative
    reasoning_tokens: int | None = NonNegative


class AccountPatch(BaseModel):
    """``PATCH /_sim/accounts/{id}``; absent fields stay as they are."""

    model_config = _STRICT
    plan_type: str | None = None
    primary_used_percent: float | None = Percent
    secondary_used_percent: float | None = Percent
    primary_window_minutes: int | None = Field(default=None, ge=1)
    # 0 removes the secondary window, as the free plan has none.
    secondary_window_minutes: int | None = NonNegative
    primary_reset_after_seconds: int | None = NonNegative
    secondary_reset_after_seconds: int | None = NonNegative
    primary_cost_percent: float | None = Percent
    secondary_cost_percent: float | None = Percent
    ttfb_ms: int | None = NonNegative
    event_delay_ms: int | None = NonNegative
    response_text: str | None = None
    reasoning: bool | None = None
    function_call: bool | None = None
    codex_empty_output: bool | None = None
    usage: UsagePatch | None = None
    credits_has_credits: bool | None = None
    credits_unlimited: bool | None = None
    credits_balance: str | None = None
    expire_access_token: bool | None = None
    revoke_access_token: bool | None = None
    refresh_token_state: Literal["expired", "invalidated"] | None = None
    omit_id_token: bool | None = None
    allowed_models: list[str] | None = None


class NewAccount(BaseModel):
    model_config = _STRICT
    plan_type: str = "plus"


class ClockPatch(BaseModel):
    model_config = _STRICT
    advance_s: float | None = None
    set_now: float | None = None
    frozen: bool | None = None


class ConfigPatch(BaseModel):
    model_config = _STRICT
    require_store_false: bool | None = None
    require_instructions: bool | None = None
    require_stream: bool | None = None
    reject_max_output_tokens: bool | None = None
    check_model: bool | None = None
    account_id_mismatch: MismatchPolicy | None = None
    reuse_revokes_family: bool | None = None
    workspace_backend_origin: str | None = None
    device_interval_s: int | None = NonNegative


class DeviceApproval(BaseModel):
    model_config = _STRICT
    account_id: str


def _set_plan(account: Account, plan_type: str, now: float) -> None:
    account.plan_type = plan_type
    primary, secondary = plan_windows(plan_type)
    quota = account.quota
    if quota.primary.minutes != primary:
        quota.primary = Window(primary, now + primary * 60, quota.primary.used_percent)
    if secondary is None:
        quota.secondary = None
    elif quota.secondary is None or quota.secondary.minutes != secondary:
        quota.secondary = Window(secondary, now + secondary * 60)


def _set_windows(account: Account, patch: AccountPatch, now: float) -> None:
    quota = account.quota
    if patch.primary_window_minutes is not None:
        quota.primary = Window(
            patch.primary_window_minutes,
            now + patch.primary_window_minutes * 60,
            quota.primary.used_percent,
        )
    if patch.secondary_window_minutes == 0:
        quota.secondary = None
    elif patch.secondary_window_minutes is not None:
        used = quota.secondary.used_percent if quota.secondary is not None else 0.0
        quota.secondary = Window(
            patch.secondary_window_minutes, now + patch.secondary_window_minutes * 60, used
        )
    if patch.primary_reset_after_seconds is not None:
        quota.primary.reset_at = now + patch.primary_reset_after_seconds
    if patch.primary_used_percent is not None:
        quota.primary.used_percent = patch.primary_used_percent
    if quota.secondary is not None:
        if patch.secondary_reset_after_seconds is not None:
            quota.secondary.reset_at = now + patch.secondary_reset_after_seconds
        if patch.secondary_used_percent is not None:
            quota.secondary.used_percent = patch.secondary_used_percent


def apply_patch(sim: Sim, account: Account, patch: AccountPatch) -> None:
    now = sim.clock.now()
    account.quota.roll(now)
    if patch.plan_type is not None:
        _set_plan(account, patch.plan_type, now)
    _set_windows(account, patch, now)
    quota, style = account.quota, account.style
    quota.primary_cost = _pick(patch.primary_cost_percent, quota.primary_cost)
    quota.secondary_cost = _pick(patch.secondary_cost_percent, quota.secondary_cost)
    quota.credits.has_credits = _pick(patch.credits_has_credits, quota.credits.has_credits)
    quota.credits.unlimited = _pick(patch.credits_unlimited, quota.credits.unlimited)
    quota.credits.balance = _pick(patch.credits_balance, quota.credits.balance)
    account.ttfb_ms = _pick(patch.ttfb_ms, account.ttfb_ms)
    account.event_delay_ms = _pick(patch.event_delay_ms, account.event_delay_ms)
    account.omit_id_token = _pick(patch.omit_id_token, account.omit_id_token)
    if patch.allowed_models is not None:
        account.allowed_models = tuple(patch.allowed_models)
    style.response_text = _pick(patch.response_text, style.response_text)
    style.reasoning = _pick(patch.reasoning, style.reasoning)
    style.function_call = _pick(patch.function_call, style.function_call)
    style.codex_empty_output = _pick(patch.codex_empty_output, style.codex_empty_output)
    if patch.usage is not None:
        style.usage = replace(style.usage, **patch.usage.model_dump(exclude_none=True))
    if patch.expire_access_token:
        sim.tokens.expire_access(account.account_id, now)
    if patch.revoke_access_token:
        sim.tokens.revoke(account.tokens.access_token)
    if patch.refresh_token_state is not None:
        sim.tokens.set_refresh_state(
            account.tokens.refresh_token, RefreshState(patch.refresh_token_state)
        )


T = TypeVar("T")


def _pick(new: T | None, old: T) -> T:
    return old if new is None else new


def apply_config(sim: Sim, patch: ConfigPatch) -> None:
    switches = patch.model_dump(include=set(sim.validation.__dataclass_fields__), exclude_none=True)
    sim.validation = replace(sim.validation, **switches)
    sim.mismatch = _pick(patch.account_id_mismatch, sim.mismatch)
    sim.tokens.reuse_revokes_family = _pick(
        patch.reuse_revokes_family, sim.tokens.reuse_revokes_family
    )
    sim.workspace_backend_origin = _pick(
        patch.workspace_backend_origin, sim.workspace_backend_origin
    )
    sim.device_interval_s = _pick(patch.device_interval_s, sim.device_interval_s)
