"""The agents: list and create; each agent's page with its pool in brief and its router keys
(issue, rotate, revoke; a new key is shown once); delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form
from starlette.responses import RedirectResponse, Response

from codexpool_ui import agent_page
from codexpool_ui.admin import AdminApiError
from codexpool_ui.agent_page import NewKey
from codexpool_ui.deps import PageRequest, page_dependencies
from codexpool_ui.pages import passes_on, refusal, render
from codexpool_ui.pool_page import pool_path

router = APIRouter(tags=["agents"])


@dataclass(frozen=True, slots=True)
class Pages(PageRequest):
    """One request for the agents pages: what every handler needs, together."""

    async def agents(
        self,
        *,
        error: str | None = None,
        form: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        context: dict[str, Any] = {
            "agents": await self.admin.agents(self.session.bearer),
            "error": error,
            "form": form or {},
        }
        return render(
            self.request,
            self.templates,
            "agents.html",
            context,
            session=self.session,
            status_code=status_code,
        )

    async def agent(
        self,
        agent_id: str,
        *,
        new_key: NewKey | None = None,
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        data = await agent_page.load(self.admin, self.session.bearer, agent_id)
        context: dict[str, Any] = {
            "data": data,
            "agent": data.agent,
            "pool_path": pool_path(agent_id),
            "new_key": new_key,
            "router_url": self.settings.router_public_url,
            "error": error,
        }
        return render(
            self.request,
            self.templates,
            "agent.html",
            context,
            session=self.session,
            status_code=status_code,
        )

    async def agent_refused(self, agent_id: str, exc: AdminApiError) -> Response:
        if passes_on(exc):
            raise exc
        return await self.agent(agent_id, error=refusal(exc), status_code=exc.status)


_pages, _form_pages = page_dependencies(Pages)
PagesDep = Annotated[Pages, Depends(_pages)]
FormPagesDep = Annotated[Pages, Depends(_form_pages)]


@router.get("/agents")
async def list_agents(pages: PagesDep) -> Response:
    return await pages.agents()


@router.post("/agents")
async def create_agent(
    pages: FormPagesDep,
    agent_id: Annotated[str, Form(alias="id")] = "",
    name: Annotated[str, Form()] = "",
) -> Response:
    """Create an agent; its page shows the first router key, once."""
    agent_id, name = agent_id.strip(), name.strip()
    kept = {"id": agent_id, "name": name}
    if not agent_id:
        return await pages.agents(error="id: give the agent an id", form=kept, status_code=422)
    try:
        created = await pages.admin.create_agent(pages.session.bearer, agent_id, name or None)
    except AdminApiError as exc:
        if passes_on(exc):
            raise
        return await pages.agents(error=refusal(exc), form=kept, status_code=exc.status)
    key = agent_page.new_key(created, pages.settings.router_public_url)
    return await pages.agent(agent_id, new_key=key, status_code=201)


@router.get("/agents/{agent_id}")
async def show_agent(agent_id: str, pages: PagesDep) -> Response:
    return await pages.agent(agent_id)


@router.post("/agents/{agent_id}/keys")
async def issue_key(
    agent_id: str, pages: FormPagesDep, action: Annotated[str, Form()] = "issue"
) -> Response:
    """Issue another router key, or rotate (the new key replaces every other one)."""
    if action not in ("issue", "rotate"):
        return await pages.agent(agent_id, error="action: issue or rotate", status_code=422)
    try:
        created = await pages.admin.add_key(
            pages.session.bearer, agent_id, rotate=action == "rotate"
        )
    except AdminApiError as exc:
        return await pages.agent_refused(agent_id, exc)
    key = agent_page.new_key(created, pages.settings.router_public_url)
    return await pages.agent(agent_id, new_key=key, status_code=201)


@router.post("/agents/{agent_id}/keys/{key_id}/revoke")
async def revoke_key(agent_id: str, key_id: str, pages: FormPagesDep) -> Response:
    try:
        await pages.admin.revoke_key(pages.session.bearer, agent_id, key_id)
    except AdminApiError as exc:
        return await pages.agent_refused(agent_id, exc)
    return RedirectResponse(
        f"/agents/{quote(agent_id, safe='')}?notice=key-revoked", status_code=303
    )


@router.post("/agents/{agent_id}/limits")
async def save_limits(
    agent_id: str,
    pages: FormPagesDep,
    requests_per_minute: Annotated[str, Form()] = "",
    tokens_per_day: Annotated[str, Form()] = "",
    models: Annotated[str, Form()] = "",
    expires_at: Annotated[str, Form()] = "",
) -> Response:
    """Set every limit of the agent; an empty field removes that limit."""
    limits: dict[str, Any] = {}
    for name, value in (
        ("requests_per_minute", requests_per_minute),
        ("tokens_per_day", tokens_per_day),
    ):
        value = value.strip()
        if value and not value.isdigit():
            return await pages.agent(agent_id, error=f"{name}: a whole number", status_code=422)
        limits[name] = int(value) if value else None
    names = [m.strip() for m in models.split(",") if m.strip()]
    limits["models"] = names or None
    # A datetime-local field has no zone: the console means UTC, as it shows times.
    limits["expires_at"] = expires_at.strip() + "Z" if expires_at.strip() else None
    try:
        await pages.admin.set_limits(pages.session.bearer, agent_id, limits)
    except AdminApiError as exc:
        return await pages.agent_refused(agent_id, exc)
    return RedirectResponse(
        f"/agents/{quote(agent_id, safe='')}?notice=limits-saved", status_code=303
    )


@router.get("/agents/{agent_id}/delete")
async def confirm_delete(agent_id: str, pages: PagesDep) -> Response:
    data = await agent_page.load(pages.admin, pages.session.bearer, agent_id)
    return render(
        pages.request, pages.templates, "agent_delete.html", {"data": data}, session=pages.session
    )


@router.post("/agents/{agent_id}/delete")
async def delete_agent(agent_id: str, pages: FormPagesDep) -> Response:
    try:
        await pages.admin.delete_agent(pages.session.bearer, agent_id)
    except AdminApiError as exc:
        return await pages.agent_refused(agent_id, exc)
    return RedirectResponse("/agents?notice=agent-deleted", status_code=303)
