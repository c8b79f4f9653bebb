"""``provider.status_changed.v1``: a provider's account status or health band changed."""

from __future__ import annotations

from typing import Literal

from codexpool_shared.events.base import BaseEvent

ProviderStatus = Literal["active", "needs_reauth", "disabled"]
"""Account status of a provider (docs/SPEC.md section 4)."""

HealthBand = Literal["healthy", "degraded", "unhealthy"]
"""Health band of a provider, from its health score thresholds."""


class ProviderStatusChangedV1(BaseEvent):
    """A provider moved from one status (or health band) to another."""

    type: Literal["provider.status_changed.v1"] = "provider.status_changed.v1"
    """Event tag."""

    provider: str
    """Name of the provider."""

    dimension: Literal["account", "health"]
    """``account``: ``previous``/``current`` are account statuses; ``health``: health bands."""

    previous: str | None
    """Status or band before the change; ``None`` when there was none."""

    current: str
    """Status or band after the change."""

    reason: str | None = None
    """Why it changed (``refresh_token_reused``, ``score 41 < 50``, ...)."""

    health_score: float | None = None
    """The health score at the change, for ``dimension="health"``."""

    actor: str
    """Which component or admin made the change (``router``, ``health``, a token id)."""
