"""Live state per provider (docs/SPEC.md section 4): quota snapshot, cooldown, circuit.

``Keys.live(provider)`` is one hash, its fields named by :class:`LiveFields`; every script that
touches it (these, and the selection script ``store/select.lua``) is rendered from those names
(``store/scripts.py``). Times are epoch milliseconds (``*_ms``) except quota ``resets_at`` (epoch
seconds, as the upstream sends them).

- Cooldown is extend-only: a shorter cooldown never shortens a longer one, and every cooldown
  is clamped to ``MAX_COOLDOWN_MS`` after now so a bogus ``resets_at`` cannot park an account
  for years. Its ``cooldown_since_ms`` is when it was last set or reaffirmed.
- Fresh quota ends a quota cooldown: a stored snapshot observed after ``cooldown_since_ms`` that
  shows capacity (every reported window under 100 %) clears a ``usage_limit`` cooldown in the
  same script that stores it. The upstream resets usage early (team resets, plan changes);
  waiting for the old ``resets_at`` would keep a usable account out for days. Error cooldowns
  and circuits are never cleared this way.
- Quota: the newest observation wins. Every snapshot carries the time its upstream answer
  arrived (``quota_observed_at_ms``), and ``write_quotas`` stores it only if the hash holds no
  later one, checked and written in one script. The router flushes snapshots it parsed earlier
  while the admin API's Refresh Live State writes one fetched just now; without the check the
  write that lands last would win, even when it was observed first.
- Circuit: ``failures`` counts consecutive health faults; at the threshold (or when a probe
  fails) the circuit opens for ``base * 2^(opens-1)`` capped and stamps
  ``circuit_opened_at_ms`` (``store/circuit.lua``, which the selection script includes too, for
  circuits a low health score opens). When it has elapsed, one replica probes; success resets
  everything and stamps ``circuit_closed_at_ms``. Only honest failures count: one that lands
  while the circuit is open or half-open, or of an attempt that started before the last
  opening, is ignored (requests in flight when it opened would otherwise re-open it with a
  doubled backoff); the probe's own failure always re-opens it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from codexpool_shared.keys import Keys
from codexpool_shared.store.replies import decode_hash
from codexpool_shared.store.scripts import LuaScript, render

MAX_COOLDOWN_MS = 8 * 24 * 3600 * 1000
"""Longest cooldown accepted: a weekly window plus a day."""


class LiveFields:
    """Field names of the live hash (``Keys.live``).

    Its scripts and the selection script are rendered from these (``store/scripts.py``).
    """

    COOLDOWN_UNTIL: Final = "cooldown_until_ms"
    COOLDOWN_REASON: Final = "cooldown_reason"
    COOLDOWN_SINCE: Final = "cooldown_since_ms"
    CIRCUIT_OPEN_UNTIL: Final = "circuit_open_until_ms"
    CIRCUIT_OPENS: Final = "circuit_opens"
    CIRCUIT_CLOSED_AT: Final = "circuit_closed_at_ms"
    CIRCUIT_OPENED_AT: Final = "circuit_opened_at_ms"
    FAILURES: Final = "failures"
    LAST_PROBE_AT: Final = "last_probe_at_ms"
    QUOTA_OBSERVED_AT: Final = "quota_observed_at_ms"
    PRIMARY_USED_PERCENT: Final = "primary_used_percent"
    PRIMARY_WINDOW_MINUTES: Final = "primary_window_minutes"
    PRIMARY_RESETS_AT: Final = "primary_resets_at"
    SECONDARY_USED_PERCENT: Final = "secondary_used_percent"
    SECONDARY_WINDOW_MINUTES: Final = "secondary_window_minutes"
    SECONDARY_RESETS_AT: Final = "secondary_resets_at"
    PLAN_TYPE: Final = "plan_type"
    CREDITS_HAS_CREDITS: Final = "credits_has_credits"
    CREDITS_UNLIMITED: Final = "credits_unlimited"
    CREDITS_BALANCE: Final = "credits_balance"


class CooldownReason:
    """The ``cooldown_reason`` that fresh quota may end (the router's 429 usage_limit)."""

    QUOTA: Final = "usage_limit"


QUOTA_WINDOW_FIELDS: Final = {
    "primary": (
        LiveFields.PRIMARY_USED_PERCENT,
        LiveFields.PRIMARY_WINDOW_MINUTES,
        LiveFields.PRIMARY_RESETS_AT,
    ),
    "secondary": (
        LiveFields.SECONDARY_USED_PERCENT,
        LiveFields.SECONDARY_WINDOW_MINUTES,
        LiveFields.SECONDARY_RESETS_AT,
    ),
}
"""The live-hash fields of each quota window: (used percent, window minutes, resets at)."""

# ARGV: until_ms, reason, now_ms, max_ms. Returns the deadline in force. A cooldown of the same
# reason that does not extend the deadline still reaffirms it (``since`` moves to now), so only
# observations newer than the latest refusal can end it.
_EXTEND_COOLDOWN = render(
    """
local deadline = math.min(tonumber(ARGV[1]), tonumber(ARGV[3]) + tonumber(ARGV[4]))
local state = redis.call('HMGET', KEYS[1], '{{LiveFields.COOLDOWN_UNTIL}}',
  '{{LiveFields.COOLDOWN_REASON}}', '{{LiveFields.COOLDOWN_SINCE}}')
local current = tonumber(state[1] or '0') or 0
if deadline > current then
  redis.call('HSET', KEYS[1], '{{LiveFields.COOLDOWN_UNTIL}}', deadline,
    '{{LiveFields.COOLDOWN_REASON}}', ARGV[2], '{{LiveFields.COOLDOWN_SINCE}}', ARGV[3])
  return deadline
end
if state[2] == ARGV[2] and tonumber(ARGV[3]) > (tonumber(state[3] or '0') or 0) then
  redis.call('HSET', KEYS[1], '{{LiveFields.COOLDOWN_SINCE}}', ARGV[3])
end
return current
""",
    LiveFields,
)

# KEYS: the live hashes. ARGV, per key: its snapshot's observed_at (epoch ms), the cooldown
# reason it may end (``CooldownReason.QUOTA`` when it shows capacity, see ``shows_capacity``;
# else ''), the number n of field and value words that follow,
# then those n words. Returns per key 0 (it already held a newer observation), 1 (stored) or 2
# (stored, and it ended a usage-limit cooldown that started before the observation). Equal
# observation times: the later write wins, so a retried write is harmless.
_WRITE_QUOTA = LuaScript.of(
    render(
        """
local results, a = {}, 1
for i, key in ipairs(KEYS) do
  local observed, n = tonumber(ARGV[a]), tonumber(ARGV[a + 2])
  local stored = tonumber(redis.call('HGET', key, '{{LiveFields.QUOTA_OBSERVED_AT}}') or '')
  if stored and observed < stored then
    results[i] = 0
  else
    redis.call('HSET', key, unpack(ARGV, a + 3, a + 2 + n))
    results[i] = 1
    if ARGV[a + 1] ~= '' then
      local c = redis.call('HMGET', key, '{{LiveFields.COOLDOWN_UNTIL}}',
        '{{LiveFields.COOLDOWN_REASON}}', '{{LiveFields.COOLDOWN_SINCE}}')
      if c[2] == ARGV[a + 1] and (tonumber(c[1] or '0') or 0) > observed
          and observed > (tonumber(c[3] or '0') or 0) then
        redis.call('HSET', key, '{{LiveFields.COOLDOWN_UNTIL}}', 0)
        results[i] = 2
      end
    end
  end
  a = a + 3 + n
end
return results
""",
        LiveFields,
    )
)


# ARGV: now_ms, threshold, base_ms, max_ms, probe ('1'/'0'), the attempt's start (epoch ms).
# Returns open_until if this failure opened the circuit, else 0.
_RECORD_FAILURE = render(
    """
{{> circuit}}
if ARGV[5] ~= '1' then
  local state = redis.call('HMGET', KEYS[1], '{{LiveFields.CIRCUIT_OPEN_UNTIL}}',
    '{{LiveFields.CIRCUIT_OPENED_AT}}')
  if (tonumber(state[1] or '0') or 0) > 0 then return 0 end
  if tonumber(ARGV[6]) < (tonumber(state[2] or '0') or 0) then return 0 end
end
local failures = redis.call('HINCRBY', KEYS[1], '{{LiveFields.FAILURES}}', 1)
if ARGV[5] ~= '1' and failures < tonumber(ARGV[2]) then return 0 end
local open_until = open_circuit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], '{{LiveFields.FAILURES}}', 0)
return open_until
""",
    LiveFields,
)


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
    circuit_opened_at_ms: int = 0
    failures: int = 0
    last_probe_at_ms: int = 0


def _quota_fields(snapshot: QuotaSnapshot) -> dict[str, str]:
    """The live-hash fields that store ``snapshot`` (absent parts are stored empty)."""
    fields: dict[str, str] = {LiveFields.QUOTA_OBSERVED_AT: str(snapshot.observed_at_ms)}
    for window, (used, minutes, resets) in zip(
        (snapshot.primary, snapshot.secondary), QUOTA_WINDOW_FIELDS.values(), strict=True
    ):
        fields[used] = "" if window is None else str(window.used_percent)
        fields[minutes] = str(window.window_minutes or "") if window else ""
        fields[resets] = str(window.resets_at or "") if window else ""
    fields[LiveFields.PLAN_TYPE] = snapshot.plan_type or ""
    for name, value in (
        (LiveFields.CREDITS_HAS_CREDITS, snapshot.credits_has_credits),
        (LiveFields.CREDITS_UNLIMITED, snapshot.credits_unlimited),
    ):
        fields[name] = "" if value is None else ("1" if value else "0")
    fields[LiveFields.CREDITS_BALANCE] = snapshot.credits_balance or ""
    return fields


def _num(fields: dict[str, str], name: str) -> float | None:
    value = fields.get(name, "")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _window(fields: dict[str, str], name: str) -> QuotaWindow | None:
    used_field, minutes_field, resets_field = QUOTA_WINDOW_FIELDS[name]
    used = _num(fields, used_field)
    if used is None:
        return None
    minutes, resets = _num(fields, minutes_field), _num(fields, resets_field)
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
    f = decode_hash(raw)
    quota = None
    observed = _num(f, LiveFields.QUOTA_OBSERVED_AT)
    if observed is not None:
        quota = QuotaSnapshot(
            primary=_window(f, "primary"),
            secondary=_window(f, "secondary"),
            plan_type=f.get(LiveFields.PLAN_TYPE) or None,
            credits_has_credits=_flag(f, LiveFields.CREDITS_HAS_CREDITS),
            credits_unlimited=_flag(f, LiveFields.CREDITS_UNLIMITED),
            credits_balance=f.get(LiveFields.CREDITS_BALANCE) or None,
            observed_at_ms=int(observed),
        )

    def ms(name: str) -> int:
        return int(_num(f, name) or 0)

    return LiveState(
        provider=provider,
        quota=quota,
        cooldown_until_ms=ms(LiveFields.COOLDOWN_UNTIL),
        cooldown_reason=f.get(LiveFields.COOLDOWN_REASON) or None,
        circuit_open_until_ms=ms(LiveFields.CIRCUIT_OPEN_UNTIL),
        circuit_opens=ms(LiveFields.CIRCUIT_OPENS),
        circuit_closed_at_ms=ms(LiveFields.CIRCUIT_CLOSED_AT),
        circuit_opened_at_ms=ms(LiveFields.CIRCUIT_OPENED_AT),
        failures=ms(LiveFields.FAILURES),
        last_probe_at_ms=ms(LiveFields.LAST_PROBE_AT),
    )


async def get_live(redis: Redis, keys: Keys, provider: str) -> LiveState:
    """The provider's live state (defaults when nothing was recorded yet)."""
    return parse_live(provider, await redis.hgetall(keys.live(provider)))


def shows_capacity(snapshot: QuotaSnapshot) -> bool:
    """Whether ``snapshot`` says the account can serve: it reports a window and none is full."""
    windows = [w for w in (snapshot.primary, snapshot.secondary) if w is not None]
    return bool(windows) and all(w.used_percent < 100 for w in windows)


def _quota_args(snapshot: QuotaSnapshot) -> list[str]:
    fields = [word for pair in _quota_fields(snapshot).items() for word in pair]
    capacity = CooldownReason.QUOTA if shows_capacity(snapshot) else ""
    return [str(snapshot.observed_at_ms), capacity, str(len(fields)), *fields]


class QuotaWrites(BaseModel):
    """What :func:`write_quotas` did."""

    model_config = ConfigDict(frozen=True)

    stored: frozenset[str]
    """Providers whose snapshot was stored; the others already held a newer one."""
    cleared: frozenset[str]
    """Providers whose usage-limit cooldown the stored snapshot ended (fresh capacity)."""


async def write_quotas(
    redis: Redis, keys: Keys, snapshots: Mapping[str, QuotaSnapshot]
) -> QuotaWrites:
    """Store each provider's snapshot unless its live hash holds a newer observation.

    A stored snapshot that shows capacity ends a usage-limit cooldown that started before it
    was observed, in the same script (fresh quota ends a quota cooldown on every replica).

    One script call for the whole batch (every live hash is in the namespace's slot, so this
    holds on a Redis Cluster too); a second one only when Redis lost its script cache (restart,
    failover).

    Raises:
        redis.exceptions.RedisError: The write failed (the snapshots before the failure in the
            batch may be stored).
    """
    if not snapshots:
        return QuotaWrites(stored=frozenset(), cleared=frozenset())
    live_keys = [keys.live(p) for p in snapshots]
    args = [word for snapshot in snapshots.values() for word in _quota_args(snapshot)]
    try:
        results = await redis.evalsha(_WRITE_QUOTA.sha, len(live_keys), *live_keys, *args)
    except NoScriptError:
        results = await redis.eval(_WRITE_QUOTA.source, len(live_keys), *live_keys, *args)
    flags = dict(zip(snapshots, (int(r) for r in results), strict=True))
    return QuotaWrites(
        stored=frozenset(p for p, f in flags.items() if f >= 1),
        cleared=frozenset(p for p, f in flags.items() if f == 2),
    )


async def write_quota(redis: Redis, keys: Keys, provider: str, snapshot: QuotaSnapshot) -> bool:
    """Store ``snapshot`` unless the provider's live hash holds a newer observation.

    It ends a usage-limit cooldown it proves stale, as :func:`write_quotas` does.

    Returns:
        Whether it was stored.
    """
    return provider in (await write_quotas(redis, keys, {provider: snapshot})).stored


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
    started_ms: int,
    threshold: int,
    base_ms: int,
    max_ms: int,
    probe: bool = False,
) -> int:
    """Count a health fault; open the circuit at ``threshold`` (or at once after a probe).

    ``started_ms`` is when the failed attempt started (epoch ms). The fault is ignored unless
    it is the probe's, or the circuit is closed and the attempt started after it last opened
    (late failures do not escalate the backoff).

    Returns:
        The circuit's open-until (epoch ms) if this failure opened it, else 0.
    """
    result = await redis.register_script(_RECORD_FAILURE)(
        keys=[keys.live(provider)],
        args=[now_ms, threshold, base_ms, max_ms, int(probe), started_ms],
    )
    return int(result)


async def record_success(
    redis: Redis, keys: Keys, provider: str, *, now_ms: int, probe: bool = False
) -> None:
    """Reset the failure streak; a successful probe closes the circuit and stamps the close."""
    fields: dict[str, int] = {LiveFields.FAILURES: 0}
    if probe:
        fields |= {
            LiveFields.CIRCUIT_OPEN_UNTIL: 0,
            LiveFields.CIRCUIT_OPENS: 0,
            LiveFields.CIRCUIT_CLOSED_AT: now_ms,
        }
    await redis.hset(keys.live(provider), mapping=fields)  # type: ignore[arg-type]
