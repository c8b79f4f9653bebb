"""``request.rejected.v1``: a client request the router answered before routing it.

With ``request.outcome.v1`` it accounts for every request of the responses routes: each one
counted in ``codexpool_router_requests_total`` is exactly one of the two events (published, or
counted in ``codexpool_events_dropped_total``).
"""

from __future__ import annotations

from typing import Literal

from codexpool_shared.events.base import BaseEvent


class RequestRejectedV1(BaseEvent):
    """A request refused before any upstream was chosen: unknown key, no pool, bad body, store."""

    type: Literal["request.rejected.v1"] = "request.rejected.v1"
    """Event tag."""

    request_id: str
    """The ``x-request-id`` answered to the client."""

    agent_id: str | None = None
    """The agent, when the key was known (``no_pool``); never the key itself."""

    reason: str
    """The error code answered (``invalid_api_key``, ``no_pool``, ``store_unavailable``, ...)."""

    status_code: int
    """The HTTP status answered."""

    route: str
    """The route's label, as in the router's metrics (``v1``, ``codex``)."""
