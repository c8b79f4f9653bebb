"""The admin API's JSON shaped into what the templates render, tolerant of missing fields."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from codexpool_ui import formatting
from codexpool_ui.charts import QuotaBar, Timeline, quota_bar, timeline

STRATEGIES = ("round-robin", "primary-first", "quota-aware")

STATUS_LABELS = {
    "active": "active",
    "needs_reauth": "needs re-auth",
    "disabled": "disabled",
    "unregistered": "not registered",
}

_WINDOWS = (("primary", "Primary"), ("secondary", "Secondary"))

# The health service's score is the product of these three (see its README); they lead the list.
_FACTORS = ("success_rate", "latency_factor", "fallback_factor")


@dataclass(frozen=True, slots=True)
class QuotaView:
    window: str
    label: str
    used_text: str
    resets_text: str
    bar: QuotaBar


@dataclass(frozen=True, slots=True)
class RowView:
    name: str
    status: str
    status_label: str
    requests: int
    success_rate: str
    health_score: str
    health_band: str
    health_summary: str
    health_components: list[tuple[str, str]]
    health_formula: str
    fallback_count: int
    timeline: Timeline
    quota: list[QuotaView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Why the router may be skipping it right now: circuit, cooldown, a failed refresh."""
    in_flight: str = ""
    """Requests in flight against its concurrency cap ("1 of 2 in flight"); empty: no cap."""


@dataclass(frozen=True, slots=True)
class OverflowView:
    """The pool's overflow endpoint, counted apart from its members (it is none of them)."""

    target: str
    """Its base URL, or why there is none now (its counts from before remain)."""
    requests: int
    successes: int
    failures: int
    success_rate: str
    timeline: Timeline


@dataclass(frozen=True, slots=True)
class LinkView:
    """A provider's OAuth link details (admins only)."""

    name: str
    account_id: str
    email: str
    plan: str
    expires: str
    last_refresh: str
    status: str
    status_label: str


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _label(key: str) -> str:
    return key.replace("_", " ")


def _components(raw: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    if not isinstance(raw, Mapping):
        return

    def rank(key: str) -> tuple[int, str]:
        return (_FACTORS.index(key) if key in _FACTORS else len(_FACTORS), key)

    for key, value in sorted(raw.items(), key=lambda item: rank(item[0])):
        if isinstance(value, Mapping):
            yield from _components(value, f"{prefix}{key} ")
        else:
            yield _label(f"{prefix}{key}"), formatting.number(value)


def _quota(raw: Any, provider: str, now: datetime) -> list[QuotaView]:
    if not isinstance(raw, Mapping):
        return []
    views = []
    for window, title in _WINDOWS:
        data = raw.get(window)
        if not isinstance(data, Mapping) or not isinstance(data.get("used_percent"), int | float):
            continue
        used = float(data["used_percent"])
        minutes = data.get("window_minutes")
        span = f" ({formatting.span(minutes * 60)})" if isinstance(minutes, int) else ""
        resets = formatting.until(data.get("resets_at"), now)
        label = f"{title} window{span}"
        # Small amounts keep a decimal: a fresh account at 0.4 % is not at 0 %.
        used_text = f"{used:.1f} % used" if used < 10 else f"{used:.0f} % used"
        views.append(
            QuotaView(
                window=window,
                label=label,
                used_text=used_text,
                resets_text=resets,
                bar=quota_bar(used, f"{provider}: {label} {used_text}, {resets}"),
            )
        )
    return views


def _notes(raw: Mapping[str, Any]) -> list[str]:
    notes = []
    if raw.get("circuit") == "open":
        notes.append(f"circuit open until {formatting.timestamp(raw.get('circuit_open_until'))}")
    if raw.get("cooldown_until"):
        reason = raw.get("cooldown_reason") or "cooldown"
        notes.append(f"{reason}: cooling down until {formatting.timestamp(raw['cooldown_until'])}")
    if raw.get("refresh_error"):
        notes.append(f"refresh failed: {raw['refresh_error']}")
    return notes


def activity_rows(activity: Mapping[str, Any], now: datetime | None = None) -> list[RowView]:
    """One row per provider of ``GET .../codex-pool/activity``, in pool order."""
    moment = now or datetime.now(UTC)
    rows = []
    for raw in activity.get("providers") or []:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("provider"), str):
            continue
        name = raw["provider"]
        status = str(raw.get("status") or "active")
        score = raw.get("health_score")
        components = list(_components(raw.get("health_components")))
        score_text = f"{score:.0f}" if isinstance(score, int | float) else "-"
        summary = "; ".join(f"{k}: {v}" for k, v in components) or "no components reported yet"
        factors = raw.get("health_components")
        formula = ""
        if isinstance(factors, Mapping) and all(
            isinstance(factors.get(f), int | float) for f in _FACTORS
        ):
            product = " × ".join(f"{factors[f]:.3f}" for f in _FACTORS)
            formula = f"100 × {product} (success rate × latency factor × fallback factor)"
        points = raw.get("timeline")
        rows.append(
            RowView(
                name=name,
                status=status,
                status_label=STATUS_LABELS.get(status, status),
                requests=_int(raw.get("requests")),
                success_rate=formatting.percent(raw.get("success_rate")),
                health_score=score_text,
                health_band=str(raw.get("health_band") or "unknown"),
                health_summary=f"Health score {score_text}: {summary}",
                health_components=components,
                health_formula=formula,
                fallback_count=_int(raw.get("fallback_count")),
                timeline=timeline(points if isinstance(points, list) else [], name),
                quota=_quota(raw.get("quota"), name, moment),
                notes=_notes(raw),
                in_flight=(
                    f"{_int(raw.get('in_flight'))} of {_int(raw['max_concurrent'])} in flight"
                    if raw.get("max_concurrent")
                    else ""
                ),
            )
        )
    return rows


def overflow_view(activity: Mapping[str, Any]) -> OverflowView | None:
    """The activity's ``overflow`` block; None when the pool has none and never had."""
    raw = activity.get("overflow")
    if not isinstance(raw, Mapping):
        return None
    requests, successes = _int(raw.get("requests")), _int(raw.get("successes"))
    points = raw.get("timeline")
    url = raw.get("base_url")
    return OverflowView(
        target=url if isinstance(url, str) and url else "removed (earlier requests still counted)",
        requests=requests,
        successes=successes,
        failures=_int(raw.get("failures")),
        success_rate=formatting.percent(successes / requests if requests else None),
        timeline=timeline(points if isinstance(points, list) else [], "overflow"),
    )


def link_view(details: Mapping[str, Any]) -> LinkView:
    """A provider's OAuth link details, as the admin API gives them to admins."""

    def text(name: str) -> str:
        value = details.get(name)
        return "-" if value in (None, "") else str(value)

    status = text("status")
    return LinkView(
        name=text("name"),
        account_id=text("account_id"),
        email=text("email"),
        plan=text("plan_type"),
        expires=formatting.timestamp(details.get("access_expires_at")),
        last_refresh=formatting.timestamp(details.get("last_refresh")),
        status=status,
        status_label=STATUS_LABELS.get(status, status),
    )
