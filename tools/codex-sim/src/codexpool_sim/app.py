"""The sim as one ASGI app: model routes dispatched directly, everything else via Starlette."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from codexpool_sim.accounts import Account
from codexpool_sim.admin import admin_routes
from codexpool_sim.backend import CompactEndpoint, ResponsesEndpoint
from codexpool_sim.backend_info import info_routes
from codexpool_sim.config import SimConfig
from codexpool_sim.oauth import oauth_routes
from codexpool_sim.probes import probe_routes
from codexpool_sim.state import Sim


class SimApp:
    """ASGI entry point; ``sim`` is the live state tests may also drive directly."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self._hot: dict[str, ASGIApp] = {
            "/backend-api/codex/responses": ResponsesEndpoint(sim, codex=True),
            "/v1/responses": ResponsesEndpoint(sim, codex=False),
            "/backend-api/codex/responses/compact": CompactEndpoint(sim, codex=True),
            "/v1/responses/compact": CompactEndpoint(sim, codex=False),
        }
        routes = [*oauth_routes(sim), *info_routes(sim), *admin_routes(sim), *probe_routes(sim)]
        self._rest = Starlette(routes=routes)

    @property
    def accounts(self) -> list[Account]:
        return list(self.sim.accounts.values())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            hot = self._hot.get(scope["path"])
            if hot is not None:
                return await hot(scope, receive, send)
        await self._rest(scope, receive, send)


def create_app(config: SimConfig | None = None) -> SimApp:
    return SimApp(Sim(config or SimConfig()))
