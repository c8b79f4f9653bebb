"""Live state per provider (docs/SPEC.md section 4): quota snapshot, cooldown, circuit.

``Keys.live(provider)`` is one hash; its field names below are also read by the router's
selection script. Times are epoch milliseconds (``*_ms``) except quota ``resets_at`` (epoch
seconds, as the upstream sends them).

- Cooldown is extend-only: a shorter cooldown never shortens a longer one, and every cooldown
  is clamped to ``MAX_COOLDOWN_MS`` after now so a bogus ``resets_at`` cannot park an account
  for years.
- Quota: the newest observation wins. Every snapshot carries the time its upstream answer
  arrived (``quota_observed_at_ms``), and ``write_quotas`` stores it only if the hash holds no
  later one, checked and written in one script. The router flushes snapshots it parsed earlier
  while the admin API's Refresh Live State writes one fetched just now; without the check the
  write that lands last would win, even when it was observed first.
- Circuit: ``failures`` counts consecutive health faults; at the threshold (or when a probe
  fails) the circuit opens for ``base * 2^(opens-1)`` capped. When it has elapsed, one replica
  probes; success resets everything and stamps ``circuit_closed_at_ms``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from codexpool_shared.keys import Keys

MAX_COOLDOWN_MS = 8 * 24 * 3600 * 1000
"""Longest cooldown accepted: a weekly window plus a day."""

COOLDOWN_UNTIL = "cooldown_until_ms"
COOLDOWN_REASON = "cooldown_reason"
CIRCUIT_OPEN_UNTIL = "circuit_open_until_ms"
CIRCUIT_OPENS = "circuit_opens"
CIRCUIT_CLOSED_AT = "circuit_closed_at_ms"
FAILURES = "failures"
LAST_PROBE_AT = "last_probe_at_ms"
QUOTA_OBSERVED_AT = "quota_observed_at_ms"

_EXTEND_COOLDOWN = """
local deadline = math.min(tonumber(ARGV[1]), tonumber(ARGV[3]) + tonumber(ARGV[4]))
local current = tonumber(redis.call('HGET', KEYS[1], 'cooldown_until_ms') or '0')
if deadline > current then
  redis.call('HSET', KEYS[1], 'cooldown_until_ms', deadline, 'cooldown_reason', ARGV[2])
  return deadline
end
return current
"""

# ARGV: the snapshot's observed_at_ms, then its field/value pairs. Returns 1 stored, 0 kept the
# newer one already there (equal times: the later write wins, so a retried write is harmless).
_WRITE_QUOTA = f"""
local stored = tonumber(redis.call('HGET', KEYS[1], '{QUOTA_OBSERVED_AT}') or '')
if stored and tonumber(ARGV[1]) < stored then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""
_WRITE_QUOTA_SHA = hashlib.sha1(_WRITE_QUOTA.encode()).hexdigest()

# ARGV: now_ms, threshold, base_ms, max_ms, probe ('1'/'0'). Returns open_until (0 = closed).
_RECORD_FAILURE = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if ARGV[5] ~= '1' and failures < tonumber(ARGV[2]) then return 0 end
local opens = redis.call('HINCRBY', KEYS[1], 'circuit_opens', 1)
local backoff = math.min(tonumber(ARGV[3]) * 2 ^ (opens - 1), tonumber(ARGV[4]))
local deadline = tonumber(ARGV[1]) + backoff
redis.call('HSET', KEYS[1], 'circuit_open_until_ms', deadline, 'failures', 0)
return deadline
"""


class QuotaWindow(BaseModel):
    """One rate-limit window as last reported by the upstream."""

    model_config = ConfigDict(frozen=True)

    used_percent: float
    window_minutes: int | None = None
    resets_at: int | None = None
    """Epoch seconds."""


class QuotaSnapshot(BaseModel):
    """The quota a provider's last upstream response reported (``x-codex-*`` headers)."""

    model_config = ConfigDict(frozen=True)

    primary: QuotaWindow | None = None
    secondary: QuotaWindow | None = None
    plan_type: str | None = None
    credits_has_credits: bool | None = None
    credits_unlimited: bool | None = None
    credits_balance: str | None = None
    observed_at_ms: int
    """When the upstream answer carrying this snapshot arrived (epoch ms): the store keeps the
    newest observation, whatever order snapshots are written in."""


class LiveState(BaseModel):
    """Everything the router tracks about a provider, as stored."""

    model_config = ConfigDict(frozen=True)

    provider: str
    quota: QuotaSnapshot | None = None
    cooldown_until_ms: int = 0
    cooldown_reason: str | None = None
    circuit_open_until_ms: int = 0
    circuit_opens: int = 0
    circuit_closed_at_ms: int = 0
    failures: int = 0
    last_probe_at_ms: int = 0


def _quota_fields(snapshot: QuotaSnapshot) -> dict[str, str]:
    """The live-hash fields that store ``snapshot`` (absent parts are stored empty)."""
    fields: dict[str, str] = {QUOTA_OBSERVED_AT: str(snapshot.observed_at_ms)}
    for name, window in (("primary", snapshot.primary), ("secondary", snapshot.secondary)):
        fields[f"{name}_used_percent"] = "" if window is None else str(window.used_percent)
        fields[f"{name}_window_minutes"] = str(window.window_minutes or "") if window else ""
        fields[f"{name}_resets_at"] = str(window.resets_at or "") if window else ""
    fields["plan_type"] = snapshot.plan_type or ""
    for name in ("credits_has_credits", "credits_unlimited"):
        value = getattr(snapshot, name)
        fields[name] = "" if value is None else ("1" if value else "0")
    fields["credits_balance"] = snapshot.credits_balance or ""
    return fields


def _num(fields: dict[str, str], name: str) -> float | None:
    value = fields.get(name, "")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _window(fields: dict[str, str], name: str) -> QuotaWindow | None:
    used = _num(fields, f"{name}_used_percent")
    if used is None:
        return None
    minutes, resets = _num(fields, f"{name}_window_minutes"), _num(fields, f"{name}_resets_at")
    return QuotaWindow(
        used_percent=used,
        window_minutes=None if minutes is None else int(minutes),
        resets_at=None if resets is None else int(resets),
    )


def _flag(fields: dict[str, str], name: str) -> bool | None:
    value = fields.get(name, "")
    return None if value == "" else value == "1"


def parse_live(provider: str, raw: dict[Any, Any]) -> LiveState:
    """Decode a live hash as returned by HGETALL."""
    f = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }
    quota = None
    observed = _num(f, QUOTA_OBSERVED_AT)
    if observed is not None:
        quota = QuotaSnapshot(
            primary=_window(f, "primary"),
            secondary=_window(f, "secondary"),
            plan_type=f.get("plan_type") or None,
            credits_has_credits=_flag(f, "credits_has_credits"),
            credits_unlimited=_flag(f, "credits_unlimited"),
            credits_balance=f.get("credits_balance") or None,
            observed_at_ms=int(observed),
        )

    def ms(name: str) -> int:
        return int(_num(f, name) or 0)

    return LiveState(
        provider=provider,
        quota=quota,
        cooldown_until_ms=ms(COOLDOWN_UNTIL),
        cooldown_reason=f.get(COOLDOWN_REASON) or None,
        circuit_open_until_ms=ms(CIRCUIT_OPEN_UNTIL),
        circuit_opens=ms(CIRCUIT_OPENS),
        circuit_closed_at_ms=ms(CIRCUIT_CLOSED_AT),
        failures=ms(FAILURES),
        last_probe_at_ms=ms(LAST_PROBE_AT),
    )


async def get_live(redis: Redis, keys: Keys, provider: str) -> LiveState:
    """The provider's live state (defaults when nothing was recorded yet)."""
    return parse_live(provider, await redis.hgetall(keys.live(provider)))


def _quota_args(snapshot: QuotaSnapshot) -> list[str]:
    args = [str(snapshot.observed_at_ms)]
    for field, value in _quota_fields(snapshot).items():
        args += [field, value]
    return args


async def write_quotas(
    redis: Redis, keys: Keys, snapshots: Mapping[str, QuotaSnapshot]
) -> frozenset[str]:
    """Store each provider's snapshot unless its live hash holds a newer observation.

    One round trip for the whole batch (a pipeline of EVALSHA); a second one only when Redis
    lost its script cache (restart, failover), to EVAL what it did not know.

    Returns:
        The providers whose snapshot was stored; the others already held a newer one.

    Raises:
        redis.exceptions.RedisError: The first error any write met (the others still ran).
    """
    calls = [(keys.live(p), _quota_args(snapshot)) for p, snapshot in snapshots.items()]
    async with redis.pipeline(transaction=False) as pipe:
        for key, args in calls:
            pipe.evalsha(_WRITE_QUOTA_SHA, 1, key, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if unknown:
        async with redis.pipeline(transaction=False) as pipe:
            for i in unknown:
                key, args = calls[i]
                pipe.eval(_WRITE_QUOTA, 1, key, *args)
            for i, reply in zip(unknown, await pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return frozenset(p for p, reply in zip(snapshots, replies, strict=True) if reply == 1)


async def write_quota(redis: Redis, keys: Keys, provider: str, snapshot: QuotaSnapshot) -> bool:
    """Store ``snapshot`` unless the provider's live hash holds a newer observation.

    Returns:
        Whether it was stored.
    """
    return provider in await write_quotas(redis, keys, {provider: snapshot})


async def extend_cooldown(
    redis: Redis, keys: Keys, provider: str, until_ms: int, reason: str, *, now_ms: int
) -> int:
    """Cool the provider down until ``until_ms`` unless it already cools down longer.

    Returns:
        The cooldown deadline now in force (epoch ms), clamped to ``MAX_COOLDOWN_MS`` from now.
    """
    result = await redis.register_script(_EXTEND_COOLDOWN)(
        keys=[keys.live(provider)], args=[until_ms, reason, now_ms, MAX_COOLDOWN_MS]
    )
    return int(result)


async def record_failure(
    redis: Redis,
    keys: Keys,
    provider: str,
    *,
    now_ms: int,
    threshold: int,
    base_ms: int,
    max_ms: int,
    probe: bool = False,
) -> int:
    """Count a health fault; open the circuit at ``threshold`` (or at once after a probe).

    Returns:
        The circuit's open-until (epoch ms) if this failure opened it, else 0.
    """
    result = await redis.register_script(_RECORD_FAILURE)(
        keys=[keys.live(provider)], args=[now_ms, threshold, base_ms, max_ms, int(probe)]
    )
    return int(result)


async def record_success(
    redis: Redis, keys: Keys, provider: str, *, now_ms: int, probe: bool = False
) -> None:
    """Reset the failure streak; a successful probe closes the circuit and stamps the close."""
    fields: dict[str, int] = {FAILURES: 0}
    if probe:
        fields |= {CIRCUIT_OPEN_UNTIL: 0, CIRCUIT_OPENS: 0, CIRCUIT_CLOSED_AT: now_ms}
    await redis.hset(keys.live(provider), mapping=fields)  # type: ignore[arg-type]
