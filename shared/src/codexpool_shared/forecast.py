"""Quota runway: burn rates from a provider's quota snapshots over time, and the pool's runway.

The health service samples each provider's live quota snapshot (``record_quota_samples``) into a
capped stream (``Keys.quota_history``); the admin API and the health service's runway loop both
compute the forecast from it with ``forecast`` (one model, documented in the admin API README):

- a provider's burn rate in one window is the least-squares slope of ``used_percent`` over the
  samples of the current window (same ``resets_at``) within the lookback; at least
  ``MIN_SAMPLES`` samples spanning ``MIN_SPAN_S``, else ``None`` (never a made-up figure);
- it exhausts when the line reaches 100 % (``None`` when it is not rising);
- the pool pools its headroom: whatever one member cannot serve moves to the others at the same
  cost, so per window the pool drains ``sum(100 - used)`` at ``sum(burn)`` and gets a member's
  used share back when that member's window resets; it runs dry when the headroom reaches 0
  (simulated reset by reset up to ``HORIZON_S``); the window that runs dry first limits it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from redis.asyncio import Redis
from redis.typing import EncodableT

from codexpool_shared.keys import Keys
from codexpool_shared.store.live import LiveFields
from codexpool_shared.store.replies import text

Window = Literal["primary", "secondary"]
WINDOWS: Final[tuple[Window, ...]] = ("primary", "secondary")
MIN_SAMPLES: Final = 3
MIN_SPAN_S: Final = 10.0
LOOKBACK_S: Final = 3600.0
HORIZON_S: Final = 7 * 86_400.0
_SAME_WINDOW_S: Final = 120
"""Two samples whose ``resets_at`` differ by less than this belong to the same window."""

_FIELDS: Final = (
    LiveFields.QUOTA_OBSERVED_AT,
    LiveFields.PRIMARY_USED_PERCENT,
    LiveFields.PRIMARY_RESETS_AT,
    LiveFields.PRIMARY_WINDOW_MINUTES,
    LiveFields.SECONDARY_USED_PERCENT,
    LiveFields.SECONDARY_RESETS_AT,
    LiveFields.SECONDARY_WINDOW_MINUTES,
)
_SHORT: Final = ("t", "pu", "pr", "pw", "su", "sr", "sw")


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation of one window of a provider's quota."""

    t: float
    """When the snapshot was observed (epoch s)."""
    used: float
    resets_at: float
    window_s: float


@dataclass(frozen=True, slots=True)
class ProviderForecast:
    """One window of one provider: latest use, burn rate, exhaustion and reset (epoch s)."""

    provider: str
    window: Window
    used_percent: float
    burn_percent_per_hour: float | None
    exhausts_at: float | None
    resets_at: float | None
    window_s: float
    observed_at: float
    """When ``used_percent`` was observed (the last sample)."""


@dataclass(frozen=True, slots=True)
class PoolForecast:
    """When the pool as a whole runs dry (epoch s) and which window limits it."""

    runway_s: float | None
    exhausts_at: float | None
    limited_by: Window | None
    before_reset: bool
    """The pool runs dry before any member's window of the limiting kind resets."""


@dataclass(frozen=True, slots=True)
class Forecast:
    """A pool's forecast: every member's windows and the pool's runway."""

    providers: tuple[ProviderForecast, ...]
    pool: PoolForecast


def _num(value: Any) -> float | None:
    if value in (None, b"", ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


async def record_quota_samples(
    redis: Redis, keys: Keys, providers: Sequence[str], maxlen: int
) -> int:
    """Append each provider's live snapshot to its history if observed since its last sample.

    The stream id is the observation time, so a repeat is refused; returns how many were added.
    """
    if not providers:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for name in providers:
            pipe.hmget(keys.live(name), list(_FIELDS))
        rows = await pipe.execute()
    async with redis.pipeline(transaction=False) as pipe:
        queued = 0
        for name, row in zip(providers, rows, strict=True):
            observed = _num(row[0])
            if observed is None:
                continue
            fields: dict[EncodableT, EncodableT] = {
                s: v for s, v in zip(_SHORT[1:], row[1:], strict=True) if v not in (None, b"")
            }
            if not fields:
                continue
            pipe.xadd(keys.quota_history(name), fields, id=f"{int(observed)}-0", maxlen=maxlen)
            queued += 1
        if not queued:
            return 0
        results = await pipe.execute(raise_on_error=False)
    return sum(1 for r in results if not isinstance(r, Exception))


async def read_samples(
    redis: Redis, keys: Keys, providers: Sequence[str], now: float, lookback_s: float = LOOKBACK_S
) -> dict[str, dict[Window, list[Sample]]]:
    """Each provider's samples of the lookback, per window, oldest first."""
    start = f"{int((now - lookback_s) * 1000)}-0"
    async with redis.pipeline(transaction=False) as pipe:
        for name in providers:
            pipe.xrange(keys.quota_history(name), min=start, max="+")
        streams = await pipe.execute()
    out: dict[str, dict[Window, list[Sample]]] = {}
    for name, entries in zip(providers, streams, strict=True):
        per: dict[Window, list[Sample]] = {"primary": [], "secondary": []}
        for entry_id, fields in entries:
            t = int(text(entry_id)[:-2]) / 1000
            f = {text(k): v for k, v in fields.items()}
            for window, prefix in (("primary", "p"), ("secondary", "s")):
                used, resets = _num(f.get(prefix + "u")), _num(f.get(prefix + "r"))
                if used is not None and resets is not None:
                    minutes = _num(f.get(prefix + "w")) or 0.0
                    per[window].append(Sample(t, used, resets, minutes * 60))  # type: ignore[index]
        out[name] = per
    return out


def _slope(samples: Sequence[Sample]) -> float:
    n = len(samples)
    mt = sum(s.t for s in samples) / n
    mu = sum(s.used for s in samples) / n
    var = sum((s.t - mt) ** 2 for s in samples)
    return sum((s.t - mt) * (s.used - mu) for s in samples) / var if var else 0.0


def provider_forecast(provider: str, window: Window, samples: Sequence[Sample]) -> ProviderForecast:
    """One provider's window: its latest use, burn rate and exhaustion time (see the module)."""
    last = samples[-1]
    current = [s for s in samples if abs(s.resets_at - last.resets_at) < _SAME_WINDOW_S]
    burn: float | None = None
    exhausts: float | None = None
    if len(current) >= MIN_SAMPLES and current[-1].t - current[0].t >= MIN_SPAN_S:
        per_s = _slope(current)
        burn = per_s * 3600
        if last.used >= 100:
            exhausts = last.t
        elif per_s > 0:
            exhausts = last.t + (100 - last.used) / per_s
    return ProviderForecast(
        provider, window, last.used, burn, exhausts, last.resets_at or None, last.window_s, last.t
    )


def _pool_window(rows: Sequence[ProviderForecast], now: float) -> tuple[float, bool] | None:
    """When this window's pooled headroom runs dry (epoch s), and whether before any reset."""
    if not rows or any(r.burn_percent_per_hour is None for r in rows):
        return None
    burns = {r.provider: max(0.0, r.burn_percent_per_hour or 0.0) / 3600 for r in rows}
    total = sum(burns.values())
    if total <= 0:
        return None
    # Each member's use projected from its last sample to now, along its own line.
    now_used = {
        r.provider: r.used_percent + burns[r.provider] * (now - r.observed_at) for r in rows
    }
    headroom = sum(max(0.0, 100 - used) for used in now_used.values())
    resets = sorted((r.resets_at, r.provider) for r in rows if r.resets_at and r.resets_at > now)
    first_reset = resets[0][0] if resets else None
    window = {r.provider: r.window_s for r in rows}
    used = {name: min(100.0, value) for name, value in now_used.items()}
    t = now
    while t - now < HORIZON_S:
        dry = t + headroom / total
        if not resets or dry <= resets[0][0]:
            return dry, first_reset is None or dry < first_reset
        at, name = resets.pop(0)
        headroom -= total * (at - t)
        # The member's window starts over: what it had used by then comes back.
        headroom += min(100.0, used[name] + burns[name] * (at - now))
        used[name] = -burns[name] * (at - now)  # its use restarts from 0 at ``at``
        t = at
        if window[name] > 0:
            resets.append((at + window[name], name))
            resets.sort()
    return None


def forecast(
    samples: Mapping[str, Mapping[Window, Sequence[Sample]]], members: Sequence[str], now: float
) -> Forecast:
    """The forecast of a pool's ``members`` from their samples (``read_samples``)."""
    rows = [
        provider_forecast(name, window, samples[name][window])
        for name in members
        if name in samples
        for window in WINDOWS
        if samples[name][window]
    ]
    best: tuple[float, Window, bool] | None = None
    for window in WINDOWS:
        of_window = [r for r in rows if r.window == window]
        if len(of_window) < len(members):
            continue  # a member with no snapshot in this window: its headroom is unknown
        found = _pool_window(of_window, now)
        if found is not None and (best is None or found[0] < best[0]):
            best = (found[0], window, found[1])
    pool = (
        PoolForecast(max(0.0, best[0] - now), best[0], best[1], best[2])
        if best is not None
        else PoolForecast(None, None, None, False)
    )
    return Forecast(tuple(rows), pool)
