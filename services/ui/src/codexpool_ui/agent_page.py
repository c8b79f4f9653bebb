"""An agent's page: its pool in brief, its 28-day usage, its router keys, and the snippets shown
with a new key."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from codexpool_ui import formatting
from codexpool_ui.admin import AdminClient, JsonObject
from codexpool_ui.pool_page import activity_or_empty
from codexpool_ui.usage_chart import UsageChart, charts
from codexpool_ui.view import RowView, activity_rows

SNIPPET_MODEL = "gpt-5-codex"
KEY_ENV = "CODEXPOOL_API_KEY"
"""The variable the Codex CLI snippet reads the key from (its ``env_key``)."""


@dataclass(frozen=True, slots=True)
class KeyView:
    key_id: str
    prefix: str
    created: str
    last_used: str | None
    """When a router last served a request with it; ``None``: never."""


@dataclass(frozen=True, slots=True)
class AgentData:
    agent: JsonObject
    strategy: str
    members: list[RowView]
    version: Any
    keys: list[KeyView] | None
    """``None`` for viewers: the admin API shows them no key details."""
    usage: UsageChart | None = None
    """The agent's hourly requests and tokens; ``None`` when the admin API gave none."""

    @property
    def healthy(self) -> int:
        return sum(1 for m in self.members if m.status == "active" and m.health_band != "unhealthy")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A router key just made: shown once, with ready-to-paste configuration."""

    api_key: str
    prefix: str
    revoked: list[str] = field(default_factory=list)
    openai_snippet: str = ""
    codex_snippet: str = ""


def key_views(raw: Any) -> list[KeyView] | None:
    if not isinstance(raw, list):
        return None
    return [
        KeyView(
            key_id=str(k.get("key_id") or ""),
            prefix=str(k.get("prefix") or ""),
            created=formatting.timestamp(k.get("created_at")),
            last_used=formatting.timestamp(k["last_used_at"]) if k.get("last_used_at") else None,
        )
        for k in raw
        if isinstance(k, dict)
    ]


async def load(admin: AdminClient, token: str, agent_id: str) -> AgentData:
    agent, activity, usage = await asyncio.gather(
        admin.agent(token, agent_id),
        activity_or_empty(admin, token, agent_id),
        charts({agent_id: admin.usage_history(token, agent_id)}),
    )
    return AgentData(
        agent=agent,
        strategy=str(activity.get("strategy") or "-"),
        members=activity_rows(activity),
        version=agent.get("pool_version"),
        keys=key_views(agent.get("keys")),
        usage=usage[agent_id],
    )


def openai_snippet(router_url: str, api_key: str) -> str:
    """Python with the official ``openai`` SDK, pointed at this deployment's router."""
    base_url, key = json.dumps(router_url + "/v1"), json.dumps(api_key)
    return (
        "from openai import OpenAI\n\n"
        f"client = OpenAI(base_url={base_url}, api_key={key})\n"
        f'response = client.responses.create(model={json.dumps(SNIPPET_MODEL)}, input="Hello")\n'
        "print(response.output_text)\n"
    )


def codex_snippet(router_url: str) -> str:
    """``~/.codex/config.toml`` for the Codex CLI in API-key mode; the key stays in the env."""
    return (
        f"# ~/.codex/config.toml   (then: export {KEY_ENV}=<the key above>)\n"
        f"model = {json.dumps(SNIPPET_MODEL)}\n"
        'model_provider = "codexpool"\n\n'
        "[model_providers.codexpool]\n"
        'name = "Codex Pool"\n'
        f"base_url = {json.dumps(router_url + '/v1')}\n"
        f'env_key = "{KEY_ENV}"\n'
        'wire_api = "responses"\n'
    )


def new_key(created: JsonObject, router_url: str) -> NewKey:
    api_key = str(created.get("api_key") or "")
    revoked = created.get("revoked")
    return NewKey(
        api_key=api_key,
        prefix=api_key[:8],
        revoked=[str(r) for r in revoked] if isinstance(revoked, list) else [],
        openai_snippet=openai_snippet(router_url, api_key),
        codex_snippet=codex_snippet(router_url),
    )
