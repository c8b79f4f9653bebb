"""The agents list, each with its "Open Pool" link."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from codexpool_ui.deps import AdminDep, SessionDep, TemplatesDep
from codexpool_ui.pages import render

router = APIRouter(tags=["agents"])


@router.get("/agents")
async def list_agents(
    request: Request, templates: TemplatesDep, admin: AdminDep, session: SessionDep
) -> Response:
    agents = await admin.agents(session.bearer)
    return render(request, templates, "agents.html", {"agents": agents}, session=session)


@router.get("/agents/{agent_id}")
async def show_agent(
    request: Request, agent_id: str, templates: TemplatesDep, admin: AdminDep, session: SessionDep
) -> Response:
    agent = await admin.agent(session.bearer, agent_id)
    return render(request, templates, "agent.html", {"agent": agent}, session=session)
