"""The Codex Pool page: activity table (live), routing configuration, delete, refresh, re-link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from starlette.responses import RedirectResponse, Response

from codexpool_ui import pool_page
from codexpool_ui.admin import AdminApiError, JsonObject
from codexpool_ui.deps import AdminDep, FormSessionDep, SessionDep, SettingsDep, TemplatesDep
from codexpool_ui.formatting import timestamp
from codexpool_ui.pages import render
from codexpool_ui.pool_page import Draft, PoolPage

router = APIRouter(prefix="/agents/{agent_id}/codex-pool", tags=["pool"])

StrategyForm = Annotated[str | None, Form()]
ProvidersForm = Annotated[list[str] | None, Form()]


def _page(
    request: Request,
    agent_id: str,
    templates: TemplatesDep,
    settings: SettingsDep,
    admin: AdminDep,
    session: SessionDep,
) -> PoolPage:
    return PoolPage(request, agent_id, templates, settings, admin, session)


def _form_page(
    request: Request,
    agent_id: str,
    templates: TemplatesDep,
    settings: SettingsDep,
    admin: AdminDep,
    session: FormSessionDep,
) -> PoolPage:
    return PoolPage(request, agent_id, templates, settings, admin, session)


PageDep = Annotated[PoolPage, Depends(_page)]
"""The page for a signed-in session."""
FormPageDep = Annotated[PoolPage, Depends(_form_page)]
"""The page for a signed-in session whose form carried its CSRF token (every change)."""


@router.get("")
async def show_pool(
    page: PageDep,
    strategy: Annotated[str | None, Query()] = None,
    providers: Annotated[list[str] | None, Query()] = None,
    replay: Annotated[str | None, Query()] = None,
    replay_hours: Annotated[int, Query(ge=1, le=24)] = 6,
) -> Response:
    """The page; with ``replay`` (a strategy) also the what-if replay of the last hours."""
    data = await page.load()
    draft = pool_page.draft_from(strategy, providers or [], data.saved)
    replayed = None
    if replay:
        try:
            replayed = await page.admin.replay(
                page.session.bearer, page.agent_id, replay, replay_hours * 3600
            )
        except AdminApiError as exc:
            return await page.refused(exc, draft)
    return page.render(data, draft=draft, replay=replayed)


@router.get("/live")
async def live_activity(page: PageDep) -> Response:
    """The activity table alone, polled by the page to stay live without a reload."""
    activity = await page.admin.activity(page.session.bearer, page.agent_id)
    context = pool_page.activity_context(page.agent_id, activity, page.settings)
    return render(page.request, page.templates, "_activity.html", context, session=page.session)


@router.get("/requests/{request_id}")
async def show_request(page: PageDep, request_id: str) -> Response:
    """One request's routing explanation: every member and why, the attempts, in words."""
    explained = await page.admin.request_explanation(page.session.bearer, request_id)
    context = {"agent_id": page.agent_id, "pool_path": page.path, "r": explained}
    return render(page.request, page.templates, "request.html", context, session=page.session)


def _edited(draft: Draft, action: str, add: str | None) -> Draft:
    names = list(draft.providers)
    if action == "add" and add and add not in names:
        names.append(add)
    verb, _, position = action.partition(":")
    if verb in ("up", "down") and position.isdigit():
        i = int(position)
        j = i - 1 if verb == "up" else i + 1
        if 0 <= i < len(names) and 0 <= j < len(names):
            names[i], names[j] = names[j], names[i]
    return Draft(draft.strategy, tuple(names))


@router.post("/routing")
async def edit_routing(
    page: FormPageDep,
    action: Annotated[str, Form()] = "save",
    strategy: StrategyForm = None,
    providers: ProvidersForm = None,
    add_provider: Annotated[str | None, Form()] = None,
) -> Response:
    """Add, reorder (the draft stays in the URL until saved) or save the routing configuration."""
    submitted = Draft(strategy or "", tuple(dict.fromkeys(providers or [])))
    if action != "save":
        edited = _edited(submitted, action, add_provider)
        return RedirectResponse(f"{page.path}?{edited.query()}", status_code=303)
    try:
        await page.admin.put_pool(
            page.session.bearer, page.agent_id, submitted.strategy, list(submitted.providers)
        )
    except AdminApiError as exc:
        return await page.refused(exc, submitted)
    return page.redirect("saved")


@router.post("/providers/{provider}/delete")
async def delete_member(page: FormPageDep, provider: str) -> Response:
    try:
        await page.admin.remove_member(page.session.bearer, page.agent_id, provider)
    except AdminApiError as exc:
        return await page.refused(exc)
    return page.redirect("deleted")


@router.post("/refresh")
async def refresh_live_state(page: FormPageDep) -> Response:
    try:
        await page.admin.refresh(page.session.bearer, page.agent_id)
    except AdminApiError as exc:
        return await page.refused(exc)
    return page.redirect("refreshed")


@router.post("/providers/{provider}/relink")
async def relink(page: FormPageDep, provider: str) -> Response:
    """Start a device-code login for the account; the page shows the code to enter."""
    try:
        device = await page.admin.start_device_login(page.session.bearer, provider)
    except AdminApiError as exc:
        return await page.refused(exc)
    return page.render(await page.load(), device=_device(provider, device))


@router.post("/providers/{provider}/relink/complete")
async def complete_relink(
    page: FormPageDep,
    provider: str,
    user_code: Annotated[str, Form()] = "",
    verification_uri: Annotated[str, Form()] = "",
) -> Response:
    """Finish the re-link once the code was approved; until then show the code again."""
    try:
        result = await page.admin.poll_device_login(page.session.bearer, provider)
    except AdminApiError as exc:
        return await page.refused(exc)
    if result.get("status") == "linked":
        return page.redirect("relinked")
    device = {"user_code": user_code, "verification_uri": verification_uri}
    return page.render(
        await page.load(), device={**_device(provider, device), "pending": True}, status_code=202
    )


def _device(provider: str, device: JsonObject) -> JsonObject:
    uri = str(device.get("verification_uri") or "")
    # The link goes into an href: only web addresses, never javascript: or data: URLs.
    return {
        "provider": provider,
        "user_code": str(device.get("user_code") or ""),
        "verification_uri": uri if uri.startswith(("http://", "https://")) else "",
        "expires_at": timestamp(device.get("expires_at")) if device.get("expires_at") else "",
    }
