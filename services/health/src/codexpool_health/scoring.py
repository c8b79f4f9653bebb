"""The health score: its parameters, and the formula the Lua script (``lua/apply.lua``) computes.

Over the last ``W`` minute buckets of a provider across every pool (``W`` =
``HEALTH_SCORE_WINDOW_MINUTES``, default 5, the current minute included):

- ``s`` successes, ``f`` health faults (``codexpool_shared.events.HEALTH_FAULTS``: 5xx,
  connection errors, timeouts, broken streams, throttling), ``n = s + f``. Quota exhaustion
  (``usage_limit``), client errors, auth errors and cancellations are not verdicts: they are
  counted and shown, never scored.
- ``a`` fallbacks away: attempts on the provider that ended in a health fault and were followed
  by another attempt of the same request.
- ``p95``: the 95th percentile time to first byte, from the buckets' histograms, over ``k``
  samples.

With a neutral prior worth ``m`` pseudo-samples (``HEALTH_PRIOR_WEIGHT``, 10) of success rate
``p0`` (``HEALTH_PRIOR_MEAN``, 0.95)::

    success   S = (s + m * p0) / (n + m)                smoothed success rate (Beta prior)
    fallback  F = 1 - c_f * a / (n + m)                  c_f = HEALTH_FALLBACK_PENALTY, 0.5
    latency   x = clamp((p95 - T) / (T_max - T), 0, 1)   T = 2000 ms, T_max = 10000 ms
              L = 1 - c_l * x * k / (k + m)              c_l = HEALTH_LATENCY_MAX_PENALTY, 0.5
    score     = 100 * S * F * L, rounded half up to 0.01 (L = 1 with no latency sample)

Bands: ``healthy`` >= 80, ``degraded`` >= 50, ``unhealthy`` < 50
(``codexpool_shared.activity.HEALTHY_MIN`` / ``DEGRADED_MIN``).

Why this shape: the prior keeps a provider with few outcomes near ``100 * p0`` = 95, so one
fault moves a fresh provider to 82 (86 without a fallback), not across a band. The product lets
every factor pull the score down on its own. The latency factor is smoothed like the success
rate, so one slow answer does not halve the score. A fallback away costs extra because the
client paid for it with a second attempt. A provider failing half of its requests (each failure
followed by a fallback) scores about 38 with plenty of traffic: unhealthy. The window is short
so that a provider whose fault is gone scores healthy again within ``W`` minutes even without
traffic (the service rescores every known provider every ``HEALTH_RESCORE_INTERVAL_S``).
"""

from __future__ import annotations

from dataclasses import dataclass

from codexpool_health.config import Settings
from codexpool_shared.activity import DEGRADED_MIN, HEALTHY_MIN, LATENCY_BOUNDS_MS


@dataclass(frozen=True, slots=True)
class ScoreConfig:
    """The score's parameters (see the module docstring); defaults are the documented ones."""

    window_minutes: int = 5
    prior_weight: float = 10.0
    prior_mean: float = 0.95
    latency_target_ms: float = 2000.0
    latency_limit_ms: float = 10_000.0
    latency_max_penalty: float = 0.5
    fallback_penalty: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoreConfig:
        return cls(
            window_minutes=settings.score_window_minutes,
            prior_weight=settings.prior_weight,
            prior_mean=settings.prior_mean,
            latency_target_ms=settings.latency_target_ms,
            latency_limit_ms=settings.latency_limit_ms,
            latency_max_penalty=settings.latency_max_penalty,
            fallback_penalty=settings.fallback_penalty,
        )

    def for_script(self) -> dict[str, object]:
        """The parameters as the Lua script reads them."""
        return {
            "prior_weight": self.prior_weight,
            "prior_mean": self.prior_mean,
            "latency_target_ms": self.latency_target_ms,
            "latency_limit_ms": self.latency_limit_ms,
            "latency_max_penalty": self.latency_max_penalty,
            "fallback_penalty": self.fallback_penalty,
            "healthy_min": HEALTHY_MIN,
            "degraded_min": DEGRADED_MIN,
            "bounds": list(LATENCY_BOUNDS_MS),
        }
