"""Per-account usage windows, the ``x-codex-*`` headers and the ``/wham/usage`` document."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PAID_WINDOWS = (300, 10080)
# The free plan reports one weekly window, as primary, and no secondary.
FREE_WINDOWS = (10080, None)

Headers = list[tuple[bytes, bytes]]


def plan_windows(plan_type: str) -> tuple[int, int | None]:
    return FREE_WINDOWS if plan_type == "free" else PAID_WINDOWS


def format_percent(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


@dataclass
class Window:
    minutes: int
    reset_at: float
    used_percent: float = 0.0

    @property
    def seconds(self) -> int:
        return self.minutes * 60

    def roll(self, now: float) -> None:
        if now >= self.reset_at:
            # Windows keep their phase: skip every whole window that passed unseen.
            passed = math.floor((now - self.reset_at) / self.seconds) + 1
            self.reset_at += passed * self.seconds
            self.used_percent = 0.0

    def reset_after(self, now: float) -> int:
        return max(0, math.ceil(self.reset_at - now))

    def charge(self, cost: float) -> None:
        # Rounding keeps N requests at cost c at exactly N*c despite binary floats.
        self.used_percent = min(100.0, round(self.used_percent + cost, 6))

    def headers(self, name: bytes, now: float) -> Headers:
        prefix = b"x-codex-" + name
        return [
            (prefix + b"-used-percent", format_percent(self.used_percent).encode()),
            (prefix + b"-window-minutes", str(self.minutes).encode()),
            (prefix + b"-reset-at", str(int(self.reset_at)).encode()),
            (prefix + b"-reset-after-seconds", str(self.reset_after(now)).encode()),
        ]

    def usage_view(self, now: float) -> dict[str, Any]:
        return {
            "used_percent": round(self.used_percent),
            "limit_window_seconds": self.seconds,
            "reset_after_seconds": self.reset_after(now),
            "reset_at": int(self.reset_at),
        }

    def admin_view(self, now: float) -> dict[str, Any]:
        return {
            "used_percent": self.used_percent,
            "window_minutes": self.minutes,
            "reset_at": int(self.reset_at),
            "reset_after_seconds": self.reset_after(now),
        }


@dataclass
class Credits:
    has_credits: bool = False
    unlimited: bool = False
    balance: str = "0"

    def headers(self) -> Headers:
        return [
            (b"x-codex-credits-has-credits", b"True" if self.has_credits else b"False"),
            (b"x-codex-credits-unlimited", b"True" if self.unlimited else b"False"),
            (b"x-codex-credits-balance", self.balance.encode()),
        ]

    def view(self) -> dict[str, Any]:
        return {
            "has_credits": self.has_credits,
            "unlimited": self.unlimited,
            "balance": self.balance,
            "approx_local_messages": [],
            "approx_cloud_messages": [],
        }


@dataclass
class Quota:
    primary: Window
    secondary: Window | None
    primary_cost: float
    secondary_cost: float
    credits: Credits = field(default_factory=Credits)

    @classmethod
    def for_plan(
        cls, plan_type: str, now: float, primary_cost: float, secondary_cost: float
    ) -> Quota:
        primary, secondary = plan_windows(plan_type)
        return cls(
            Window(primary, now + primary * 60),
            None if secondary is None else Window(secondary, now + secondary * 60),
            primary_cost,
            secondary_cost,
        )

    def windows(self) -> list[Window]:
        return [self.primary] if self.secondary is None else [self.primary, self.secondary]

    def roll(self, now: float) -> None:
        for window in self.windows():
            window.roll(now)

    def exhausted(self) -> list[Window]:
        return [w for w in self.windows() if w.used_percent >= 100.0]

    def charge(self) -> None:
        self.primary.charge(self.primary_cost)
        if self.secondary is not None:
            self.secondary.charge(self.secondary_cost)

    def headers(self, plan_type: str, now: float) -> Headers:
        out: Headers = [
            (b"x-codex-active-limit", b"codex"),
            (b"x-codex-plan-type", plan_type.encode()),
            *self.primary.headers(b"primary", now),
        ]
        if self.secondary is not None:
            out += self.secondary.headers(b"secondary", now)
        out += self.credits.headers()
        return out

    def usage_document(self, plan_type: str, now: float) -> dict[str, Any]:
        reached = bool(self.exhausted())
        return {
            "plan_type": plan_type,
            "rate_limit": {
                "allowed": not reached,
                "limit_reached": reached,
                "primary_window": self.primary.usage_view(now),
                "secondary_window": None
                if self.secondary is None
                else self.secondary.usage_view(now),
            },
            "credits": self.credits.view(),
            "additional_rate_limits": [],
            "rate_limit_reached_type": "rate_limit_reached" if reached else None,
        }

    def limit_error(self, plan_type: str, now: float) -> dict[str, Any]:
        """The §5.3 body: it resets when the last exhausted window does."""
        resets_at = max((w.reset_at for w in self.exhausted()), default=self.primary.reset_at)
        return {
            "error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": plan_type,
                "resets_at": int(resets_at),
                "eligible_promo": None,
                "resets_in_seconds": max(0, math.ceil(resets_at - now)),
            }
        }
