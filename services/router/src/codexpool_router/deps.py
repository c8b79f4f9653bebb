from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from codexpool_router.config import Settings
from codexpool_router.core import Core, Members
from codexpool_router.inbound import agent_key_digest
from codexpool_router.middleware import REQUEST_ID
from codexpool_shared.service import ServiceState, state_dependency


@dataclass(frozen=True, kw_only=True)
class State(ServiceState):
    """What the lifespan opens: the shared clients plus the Core every handler works with."""

    settings: Settings
    core: Core


_state = state_dependency(State)


def _core(request: Request) -> Core:
    return _state(request).core


CoreDep = Annotated[Core, Depends(_core)]


async def _members(request: Request, core: CoreDep) -> Members:
    # The key is checked as the responses routes check it (``Core.members``).
    return await core.members(agent_key_digest(request.scope))


MembersDep = Annotated[Members, Depends(_members)]
"""The caller's pool, read after its agent key was checked."""


def _request_id(request: Request) -> str:
    return str(request.scope["state"][REQUEST_ID])


RequestIdDep = Annotated[str, Depends(_request_id)]
"""The answer's ``x-request-id``."""
