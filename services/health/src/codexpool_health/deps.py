from __future__ import annotations

from dataclasses import dataclass

from codexpool_health.config import Settings
from codexpool_health.store import HealthStore
from codexpool_shared.service import ServiceState


@dataclass(frozen=True, kw_only=True)
class State(ServiceState):
    """What the lifespan opens: the shared clients plus the health aggregates' store."""

    settings: Settings
    store: HealthStore
