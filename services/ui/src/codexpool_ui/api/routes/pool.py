"""The Codex Pool page: activity table (live), routing configuration, delete, refresh, re-link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import RedirectResponse, Response

from codexpool_ui import pool_page
from codexpool_ui.admin import AdminApiError, JsonObject
from codexpool_ui.deps import AdminDep, FormSessionDep, SessionDep, SettingsDep, TemplatesDep
from codexpool_ui.formatting import timestamp
from codexpool_ui.pages import render

router = APIRouter(prefix="/agents/{agent_id}/codex-pool", tags=["pool"])

StrategyForm = Annotated[str | None, Form()]
ProvidersForm = Annotated[list[str] | None, Form()]


@router.get("")
async def show_pool(
    request: Request,
    agent_id: str,
    templates: TemplatesDep,
    settings: SettingsDep,
    admin: AdminDep,
    session: SessionDep,
    strategy: Annotated[str | None, Query()] = None,
    providers: Annotated[list[str] | None, Query()] = None,
) -> Response:
    data = await pool_page.load(admin, session, agent_id)
    draft = pool_page.draft_from(strategy, providers or [], data.saved)
    return pool_page.render_pool(request, templates, settings, session, agent_id, data, draft=draft)


@router.get("/live")
async def live_activity(
    request: Request,
    agent_id: str,
    templates: TemplatesDep,
    settings: SettingsDep,
    admin: AdminDep,
    session: SessionDep,
) -> Response:
    """The activity table alone, polled by the page to stay live without a reload."""
    activity = await admin.activity(session.bearer, agent_id)
    context = pool_page.activity_context(agent_id, activity, settings)
    return render(request, templates, "_activity.html", context, session=session)


def _edited(draft: pool_page.Draft, action: str, add: str | None) -> pool_page.Draft:
    names = list(draft.providers)
    if action == "add" and add and add not in names:
        names.append(add)
    verb, _, position = action.partition(":")
    if verb in ("up", "down") and position.isdigit():
        i = int(position)
        j = i - 1 if verb == "up" else i + 1
        if 0 <= i < len(names) and 0 <= j < len(names):
            names[i], names[j] = names[j], names[i]
    return pool_page.Draft(draft.strategy, tuple(names))


async def _refused(
    request: Request,
    agent_id: str,
    templates: TemplatesDep,
    settings: SettingsDep,
    admin: AdminDep,
    session: FormSessionDep,
    exc: AdminApiError,
    draft: pool_page.Draft | None = None,
) -> Response:
    """The page again with the admin API's refusal on it (a viewer's 403, a 422 naming a field).

    An expired token (401) or an unreachable admin API (502) goes to the app's handlers instead.
    """
    if exc.status in (401, 502):
        raise exc
    data = await pool_page.load(admin, session, agent_id)
    return pool_page.render_pool(
        request,
        templates,
        settings,
        session,
        agent_id,
        data,
        draft=draft,
        error=exc.message,
        status_code=exc.status,
    )


@router.post("/routing")
async def edit_routing(
    request: Request,
    agent_id: str,
    templates: TemplatesDep,
    settings: SettingsDep,
    admin: AdminDep,
    session: FormSessionDep,
    action: Annotated[str, Form()] = "save",
    strategy: StrategyForm = None,
    providers: ProvidersForm = None,
    add_provider: Annotated[str | None, Form()] = None,
) -> Response:
    """Add, reorder (the draft stays in the URL until saved) or save the routing configuration."""
    path = pool_page.pool_path(agent_id)
    submitted = pool_page.Draft(strategy or "", tuple(dict.fromkeys(providers or [])))
    if action != "save":
        edited = _edited(submitted, action, add_provider)
        return RedirectResponse(f"{path}?{edited.query()}", status_code=303)
    try:
        await admin.put_pool(
            session.bearer, agent_id, submitted.strategy, list(submitted.providers)
        )
    except AdminApiError as exc:
        return await _refused(
            request, agent_id, templates, settings, admin, session, exc, submitted
        )
    return RedirectResponse(f"{path}?notice=saved", status_code=303)


@router.post("/providers/{provider}/delete")
async def delete_member(
    request: Request,
    agent_id: str,
    provider: str,
    templates: TemplatesDep,
    settings: SettingsDep,
    admin: AdminDep,
    session: FormSessionDep,
) -> Response:
    try:
        await admin.remove_member(session.bearer, agent_id, provider)
    except AdminApiError as exc:
        return await _refused(request, agent_id, templates, settings, admin, session, exc)
    return RedirectResponse(f"{pool_page.pool_path(agent_id)}?notice=deleted", status_code=303)


@router.post("/refresh")
async def refresh_live_state(
    request: Request,
    agent_id: str,
    templates: TemplatesDep,
    settings: SettingsDep,
    admin: AdminDep,
    session: FormSessionDep,
) -> Response:
    try:
        await admin.refresh(session.bearer, agent_id)
    except AdminApiError as exc:
        return await _refused(request, agent_id, templates, settings, admin, session, exc)
    return RedirectResponse(f"{pool_page.pool_path(agent_id)}?notice=refreshed", status_code=303)


@router.post("/providers/{provider}/relink")
async def relink(
    request: Request,
    agent_id: str,
    provider: str,
    templates: TemplatesDep,
    settings: SettingsDep,
    admin: AdminDep,
    session: FormSessionDep,
) -> Response:
    """Start a device-code login for the account; the page shows the code to enter."""
    try:
        device = await admin.start_device_login(session.bearer, provider)
    except AdminApiError as exc:
        return await _refused(request, agent_id, templates, settings, admin, session, exc)
    data = await pool_page.load(admin, session, agent_id)
    return pool_page.render_pool(
        request, templates, settings, session, agent_id, data, device=_device(provider, device)
    )


@router.post("/providers/{provider}/relink/complete")
async def complete_relink(
    request: Request,
    agent_id: str,
    provider: str,
    templates: TemplatesDep,
    settings: SettingsDep,
    admin: AdminDep,
    session: FormSessionDep,
    user_code: Annotated[str, Form()] = "",
    verification_uri: Annotated[str, Form()] = "",
) -> Response:
    """Finish the re-link once the code was approved; until then show the code again."""
    try:
        result = await admin.poll_device_login(session.bearer, provider)
    except AdminApiError as exc:
        return await _refused(request, agent_id, templates, settings, admin, session, exc)
    if result.get("status") == "linked":
        path = pool_page.pool_path(agent_id)
        return RedirectResponse(f"{path}?notice=relinked", status_code=303)
    data = await pool_page.load(admin, session, agent_id)
    device = {"user_code": user_code, "verification_uri": verification_uri}
    return pool_page.render_pool(
        request,
        templates,
        settings,
        session,
        agent_id,
        data,
        device={**_device(provider, device), "pending": True},
        status_code=202,
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
