"""The models the pool serves: the first active member's ``/codex/models`` document.

``GET /backend-api/codex/models`` relays it; ``GET /v1/models`` turns it into an OpenAI model
list.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from starlette.types import Scope

from codexpool_router.core import Core
from codexpool_router.upstream import client_headers, upstream_headers
from codexpool_shared.errors import ApiError
from codexpool_shared.store import Provider, read_credentials

CLIENT_VERSION = "0.169.0"


async def upstream_models(
    core: Core, providers: list[Provider], scope: Scope, request_id: str
) -> bytes:
    """The models document of the first active member that lists them, asked for the client
    of ``scope`` as its responses would be."""
    forwarded, originator, agent = client_headers(scope)
    url = core.settings.upstream_base_url.rstrip("/") + "/codex/models"
    for provider in providers:
        if provider.status != "active":
            continue
        creds = await read_credentials(core.redis, core.keys, provider.name)
        headers = upstream_headers(
            forwarded,
            originator,
            agent,
            token=core.tokens.access_token(provider.name, creds.access_token),
            account_id=creds.account_id,
            default_originator=core.settings.originator,
            default_user_agent=core.settings.user_agent,
            request_id=request_id,
            accept="application/json",
        )
        try:
            async with core.egress.session(provider.name).get(
                url,
                params={"client_version": CLIENT_VERSION},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=core.settings.ttfb_timeout_s),
            ) as resp:
                body = await resp.read()
                if resp.status == 200:
                    return body
        except (aiohttp.ClientError, TimeoutError):
            continue
    raise ApiError(503, "No provider could list models.", code="no_eligible_provider")


def openai_models(document: bytes) -> dict[str, Any]:
    """The Codex models document as an OpenAI model list."""
    models = orjson.loads(document).get("models", [])
    slugs = [m.get("slug") for m in models if isinstance(m, dict)]
    return {
        "object": "list",
        "data": [
            {"id": s, "object": "model", "created": 0, "owned_by": "openai"} for s in slugs if s
        ],
    }
