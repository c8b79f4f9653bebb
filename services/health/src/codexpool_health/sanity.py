"""Which decoded outcome events are not sane enough to aggregate, and why.

A valid event can still do lasting harm: an ``occurred_at`` far in the future makes buckets whose
TTL never runs out, a very old one lands in buckets nobody reads any more, and an arbitrary name
becomes a Redis key and a metric label. Such events are dead-lettered with a counted reason.
Names are held to the registry's own rule (``codexpool_shared.store.providers.validate_name``),
the one the admin API enforces for providers and agents.
"""

from __future__ import annotations

import functools
from typing import Final, Literal

from codexpool_shared.events import RequestOutcomeV1
from codexpool_shared.store.errors import InvalidField
from codexpool_shared.store.providers import validate_name

InsaneReason = Literal["future", "stale", "bad_name"]

MODEL_MAX_CHARS: Final = 200
"""Models are not registered, so no slug rule applies; this is far beyond any model id."""


@functools.lru_cache(maxsize=4096)
def _slug(name: str) -> bool:
    # Cached: the same few registry names arrive in every event, and the check (a regular
    # expression, an exception when it fails) was about 4 % of the service's CPU.
    try:
        validate_name(name)
    except InvalidField:
        return False
    return True


def insanity(
    event: RequestOutcomeV1, now: float, *, max_future_s: float, max_age_s: float
) -> InsaneReason | None:
    """Why ``event`` must not be aggregated at ``now`` (epoch seconds), or ``None``."""
    age = now - event.occurred_at.timestamp()
    if age < -max_future_s:
        return "future"
    if age > max_age_s:
        return "stale"
    names = [event.agent_id, *(attempt.provider for attempt in event.attempts)]
    if event.final_provider is not None:
        names.append(event.final_provider)
    if not all(map(_slug, names)):
        return "bad_name"
    if event.model is not None and len(event.model) > MODEL_MAX_CHARS:
        return "bad_name"
    return None
