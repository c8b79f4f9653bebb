"""The providers page: every registered account with its link, live state and pools.

The admin API keeps live state (quota, health) per pool member, so the page reads each agent's
activity once and folds the rows by provider: a provider's health and quota are its own, the
same in every pool, and the agents whose activity lists it are the pools it will leave.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from codexpool_ui import formatting
from codexpool_ui.admin import AdminApiError, AdminClient, JsonObject
from codexpool_ui.pool_page import activity_or_empty
from codexpool_ui.usage_chart import UsageChart, charts
from codexpool_ui.view import STATUS_LABELS, QuotaView, RowView, activity_rows

MAX_AUTH_JSON_BYTES = 64 * 1024
"""A Codex auth.json is a few KB of tokens; anything much larger is not one."""


@dataclass(frozen=True, slots=True)
class ProviderView:
    name: str
    status: str
    status_label: str
    plan: str
    created: str
    account_id: str
    """Link details are ``-`` for viewers: the admin API gives them to admins only."""
    email: str
    expires: str
    last_refresh: str
    health_score: str = "-"
    health_band: str = "unknown"
    quota: list[QuotaView] = field(default_factory=list)
    pools: list[str] = field(default_factory=list)
    """Agents whose pool lists this provider."""
    proxy: str = ""
    """Its egress proxy as scheme://host:port (the admin API never returns credentials)."""


class BadAuthJson(ValueError):
    """A pasted or uploaded auth.json that is not a JSON object; ``field`` names the input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def parse_auth_json(text: str, field: str) -> JsonObject:
    """The document an admin pasted (``field`` = auth_json) or uploaded (auth_file)."""
    if not text.strip():
        raise BadAuthJson(field, "paste the contents of auth.json or choose the file")
    if len(text.encode()) > MAX_AUTH_JSON_BYTES:
        raise BadAuthJson(field, f"larger than {MAX_AUTH_JSON_BYTES // 1024} KiB: not an auth.json")
    try:
        document = json.loads(text)
    except ValueError as exc:
        # The position only: the message of a JSON error can quote the (secret) text.
        position = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        where = f" (line {position[0]}, column {position[1]})" if position[0] else ""
        raise BadAuthJson(field, f"not valid JSON{where}") from None
    if not isinstance(document, dict):
        raise BadAuthJson(field, "a Codex auth.json is a JSON object with a 'tokens' member")
    return document


def _text(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    return "-" if value in (None, "") else str(value)


def provider_views(
    providers: list[JsonObject], activities: Mapping[str, Mapping[str, Any]]
) -> list[ProviderView]:
    """One view per provider, in the admin API's order; ``activities`` by agent id."""
    rows: dict[str, RowView] = {}
    pools: dict[str, list[str]] = {}
    for agent_id, activity in sorted(activities.items()):
        for member in activity_rows(activity):
            rows.setdefault(member.name, member)
            pools.setdefault(member.name, []).append(agent_id)
    views = []
    for raw in providers:
        name = str(raw.get("name") or "")
        if not name:
            continue
        status = str(raw.get("status") or "active")
        row = rows.get(name)
        views.append(
            ProviderView(
                name=name,
                status=status,
                status_label=STATUS_LABELS.get(status, status),
                plan=_text(raw, "plan_type"),
                created=formatting.timestamp(raw.get("created_at")),
                account_id=_text(raw, "account_id"),
                email=_text(raw, "email"),
                expires=formatting.timestamp(raw.get("access_expires_at")),
                last_refresh=formatting.timestamp(raw.get("last_refresh")),
                health_score=row.health_score if row else "-",
                health_band=row.health_band if row else "unknown",
                quota=row.quota if row else [],
                pools=pools.get(name, []),
                proxy=str(raw.get("proxy") or ""),
            )
        )
    return views


async def _activity(admin: AdminClient, token: str, agent_id: str) -> JsonObject:
    try:
        return await activity_or_empty(admin, token, agent_id)
    except AdminApiError as exc:
        if exc.status == 404:  # the agent was deleted since the list was read
            return {"providers": []}
        raise


async def load(admin: AdminClient, token: str) -> list[ProviderView]:
    providers, agents = await asyncio.gather(admin.providers(token), admin.agents(token))
    ids = [str(a["id"]) for a in agents if isinstance(a.get("id"), str)]
    activities = await asyncio.gather(*(_activity(admin, token, i) for i in ids))
    return provider_views(providers, dict(zip(ids, activities, strict=True)))


async def usage(admin: AdminClient, token: str, providers: list[ProviderView]) -> list[UsageChart]:
    """Each provider's 28-day usage across every pool, in the page's order. Read once per page
    load, not on the live refresh: the history moves by the hour."""
    found = await charts({p.name: admin.provider_usage_history(token, p.name) for p in providers})
    return [chart for chart in found.values() if chart is not None]


def device_view(provider: str, device: Mapping[str, Any], *, register: bool) -> JsonObject:
    """What the page shows of a device-code login it started, safe to put in an href."""
    uri = str(device.get("verification_uri") or "")
    interval = device.get("interval_s")
    return {
        "provider": provider,
        "register": register,
        "user_code": str(device.get("user_code") or ""),
        # The link goes into an href: only web addresses, never javascript: or data: URLs.
        "verification_uri": uri if uri.startswith(("http://", "https://")) else "",
        "expires_at": formatting.timestamp(device.get("expires_at"))
        if device.get("expires_at")
        else "",
        "interval_s": max(interval, 1) if isinstance(interval, int) else 5,
    }
