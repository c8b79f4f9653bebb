"""Loading and rendering the Codex Pool page: saved configuration, draft, activity, links."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response

from codexpool_ui.admin import AdminApiError, AdminClient, JsonObject
from codexpool_ui.config import Settings
from codexpool_ui.pages import render
from codexpool_ui.runway_view import runway_rows, runway_sentence
from codexpool_ui.session import Session
from codexpool_ui.view import STRATEGIES, LinkView, activity_rows, link_view, overflow_view


@dataclass(frozen=True, slots=True)
class Draft:
    """A routing configuration being edited: carried in the form and the URL, never stored."""

    strategy: str
    providers: tuple[str, ...]

    def query(self) -> str:
        return urlencode({"strategy": self.strategy, "providers": list(self.providers)}, doseq=True)


@dataclass(frozen=True, slots=True)
class PoolData:
    agent: JsonObject
    saved: Draft
    version: Any
    activity: JsonObject
    registered: list[JsonObject]
    links: list[LinkView] = field(default_factory=list)
    requests: list[JsonObject] = field(default_factory=list)
    """The pool's latest requests, newest first (each one's explanation is a page)."""
    forecast: JsonObject | None = None
    """The pool's quota runway; None for an agent without a pool."""


REPLAY_HOURS = (1, 6, 24)
"""Windows the page offers to replay, in hours."""
LATEST_REQUESTS = 20
"""Requests listed on the pool page."""


def pool_path(agent_id: str) -> str:
    return f"/agents/{quote(agent_id, safe='')}/codex-pool"


def draft_from(strategy: str | None, providers: list[str], saved: Draft) -> Draft:
    """The draft a form or URL describes; the saved configuration when it describes none."""
    if strategy is None and not providers:
        return saved
    names = tuple(dict.fromkeys(p for p in providers if p))
    return Draft(strategy=strategy or saved.strategy, providers=names)


async def activity_or_empty(admin: AdminClient, token: str, agent_id: str) -> JsonObject:
    """The pool's activity; an empty pool for an agent that has none yet (the admin API 404s)."""
    try:
        return await admin.activity(token, agent_id)
    except AdminApiError as exc:
        if exc.code == "pool_not_found":
            return {"agent_id": agent_id, "strategy": STRATEGIES[0], "providers": []}
        raise


async def forecast_or_none(admin: AdminClient, token: str, agent_id: str) -> JsonObject | None:
    """The pool's runway; None for an agent that has no pool yet."""
    try:
        return await admin.forecast(token, agent_id)
    except AdminApiError as exc:
        if exc.code == "pool_not_found":
            return None
        raise


async def load(admin: AdminClient, session: Session, agent_id: str) -> PoolData:
    token = session.bearer
    agent = await admin.agent(token, agent_id)
    activity, registered, requests, forecast = await asyncio.gather(
        activity_or_empty(admin, token, agent_id),
        admin.providers(token),
        admin.recent_requests(token, agent_id, LATEST_REQUESTS),
        forecast_or_none(admin, token, agent_id),
    )
    rows = [r for r in activity.get("providers") or [] if isinstance(r, Mapping)]
    return PoolData(
        agent=agent,
        saved=Draft(
            str(activity.get("strategy") or STRATEGIES[0]),
            tuple(str(r.get("provider")) for r in rows),
        ),
        version=activity.get("version"),
        activity=activity,
        registered=registered,
        # The admin API puts the OAuth link details in the rows for admins only.
        links=[link_view(r["oauth"]) for r in rows if isinstance(r.get("oauth"), Mapping)],
        requests=requests,
        forecast=forecast,
    )


def activity_context(
    agent_id: str, activity: Mapping[str, Any], settings: Settings
) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "pool_path": pool_path(agent_id),
        "updated_at": datetime.now(UTC).strftime("%H:%M:%S UTC"),
        "rows": activity_rows(activity),
        "overflow": overflow_view(activity),
        "live_url": f"{pool_path(agent_id)}/live",
        "live_interval_ms": settings.live_interval_ms,
    }


@dataclass(frozen=True, slots=True)
class PoolPage:
    """One request for an agent's pool page: what every handler of the page needs, together."""

    request: Request
    agent_id: str
    templates: Jinja2Templates
    settings: Settings
    admin: AdminClient
    session: Session

    @property
    def path(self) -> str:
        return pool_path(self.agent_id)

    async def load(self) -> PoolData:
        return await load(self.admin, self.session, self.agent_id)

    def redirect(self, notice: str) -> RedirectResponse:
        """Back to the page after a change, with one of ``pages.NOTICES`` on it."""
        return RedirectResponse(f"{self.path}?notice={notice}", status_code=303)

    def render(
        self,
        data: PoolData,
        *,
        draft: Draft | None = None,
        error: str | None = None,
        device: JsonObject | None = None,
        replay: JsonObject | None = None,
        status_code: int = 200,
    ) -> Response:
        shown = draft or data.saved
        addable = [p for p in data.registered if p.get("name") not in shown.providers]
        context = {
            **activity_context(self.agent_id, data.activity, self.settings),
            "agent": data.agent,
            "draft": shown,
            "dirty": shown != data.saved,
            "version": data.version,
            "strategies": STRATEGIES,
            "addable": addable,
            "links": data.links,
            "requests": data.requests,
            "runway_sentence": runway_sentence(data.forecast),
            "runway_rows": runway_rows(data.forecast),
            "replay": replay,
            "replay_choices": REPLAY_HOURS,
            "device": device,
            "error": error,
        }
        return render(
            self.request,
            self.templates,
            "pool.html",
            context,
            session=self.session,
            status_code=status_code,
        )

    async def refused(self, exc: AdminApiError, draft: Draft | None = None) -> Response:
        """The page again with the admin API's refusal on it (a viewer's 403, a 422 naming a
        field). An expired token (401) or an unreachable admin API (502) goes to the app's
        handlers instead."""
        if exc.status in (401, 502):
            raise exc
        return self.render(
            await self.load(), draft=draft, error=exc.message, status_code=exc.status
        )
