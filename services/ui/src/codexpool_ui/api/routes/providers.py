"""The providers page: register (paste, upload, or sign in with the device code), enable or
disable, re-link, delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from starlette.responses import RedirectResponse, Response

from codexpool_ui import providers_page
from codexpool_ui.admin import AdminApiError, JsonObject
from codexpool_ui.deps import PageRequest, page_dependencies
from codexpool_ui.pages import passes_on, refusal, render
from codexpool_ui.providers_page import MAX_AUTH_JSON_BYTES, BadAuthJson, device_view

router = APIRouter(prefix="/providers", tags=["providers"])


@dataclass(frozen=True, slots=True)
class ProvidersPage(PageRequest):
    """One request for the providers page: what every handler needs, together."""

    async def render(
        self,
        *,
        error: str | None = None,
        device: JsonObject | None = None,
        form: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        providers = await providers_page.load(self.admin, self.session.bearer)
        context: dict[str, Any] = {
            "providers": providers,
            "usage": await providers_page.usage(self.admin, self.session.bearer, providers),
            "live_url": "/providers/live",
            "live_interval_ms": self.settings.live_interval_ms,
            "error": error,
            "device": device,
            "form": form or {},
        }
        return render(
            self.request,
            self.templates,
            "providers.html",
            context,
            session=self.session,
            status_code=status_code,
        )

    async def refused(self, exc: AdminApiError, form: dict[str, str] | None = None) -> Response:
        """The page again with the admin API's refusal on it; an ended session or an
        unreachable admin API goes to the app's handlers instead."""
        if passes_on(exc):
            raise exc
        return await self.render(error=refusal(exc), form=form, status_code=exc.status)


_page, _form_page = page_dependencies(ProvidersPage)
PageDep = Annotated[ProvidersPage, Depends(_page)]
FormPageDep = Annotated[ProvidersPage, Depends(_form_page)]


@router.get("")
async def list_providers(page: PageDep) -> Response:
    return await page.render()


@router.get("/live")
async def live_providers(page: PageDep) -> Response:
    """The providers table alone, polled by the page to stay live without a reload."""
    context = {"providers": await providers_page.load(page.admin, page.session.bearer)}
    return render(page.request, page.templates, "_providers.html", context, session=page.session)


async def _uploaded(upload: UploadFile | None) -> str:
    if upload is None or not upload.filename:
        return ""
    data = await upload.read(MAX_AUTH_JSON_BYTES + 1)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise BadAuthJson("auth_file", "not a text file: choose the auth.json file") from None


@router.post("")
async def register_provider(
    page: FormPageDep,
    name: Annotated[str, Form()] = "",
    auth_json: Annotated[str, Form()] = "",
    auth_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Register from a pasted auth.json, or the uploaded file when one was chosen."""
    name = name.strip()
    kept = {"name": name}
    try:
        if not name:
            raise BadAuthJson("name", "give the provider a name, e.g. chatgpt-oauth-account-1")
        uploaded = await _uploaded(auth_file)
        field = "auth_file" if uploaded else "auth_json"
        document = providers_page.parse_auth_json(uploaded or auth_json, field)
        await page.admin.register_provider(page.session.bearer, name, document)
    except BadAuthJson as exc:
        return await page.render(error=str(exc), form=kept, status_code=422)
    except AdminApiError as exc:
        return await page.refused(exc, kept)
    return RedirectResponse("/providers?notice=registered", status_code=303)


@router.post("/{name}/status")
async def set_status(name: str, page: FormPageDep, status: Annotated[str, Form()] = "") -> Response:
    if status not in ("active", "disabled"):
        return await page.render(error="status: choose enable or disable", status_code=422)
    try:
        await page.admin.set_provider_status(page.session.bearer, name, status)
    except AdminApiError as exc:
        return await page.refused(exc)
    notice = "provider-enabled" if status == "active" else "provider-disabled"
    return RedirectResponse(f"/providers?notice={notice}", status_code=303)


@router.post("/{name}/proxy")
async def set_proxy(
    name: str, page: FormPageDep, proxy_url: Annotated[str, Form()] = ""
) -> Response:
    """Set the provider's egress proxy; an empty field removes it."""
    try:
        await page.admin.set_provider_proxy(page.session.bearer, name, proxy_url.strip() or None)
    except AdminApiError as exc:
        return await page.refused(exc)
    notice = "provider-proxy-set" if proxy_url.strip() else "provider-proxy-removed"
    return RedirectResponse(f"/providers?notice={notice}", status_code=303)


@router.get("/{name}/delete")
async def confirm_delete(name: str, page: PageDep) -> Response:
    """Names the pools the provider will leave before anything is deleted."""
    views = await providers_page.load(page.admin, page.session.bearer)
    found = next((v for v in views if v.name == name), None)
    if found is None:
        raise AdminApiError(404, f"provider {name!r} does not exist", param="name")
    context = {"provider": found}
    return render(
        page.request, page.templates, "provider_delete.html", context, session=page.session
    )


@router.post("/{name}/delete")
async def delete_provider(name: str, page: FormPageDep) -> Response:
    try:
        await page.admin.delete_provider(page.session.bearer, name)
    except AdminApiError as exc:
        return await page.refused(exc)
    return RedirectResponse("/providers?notice=provider-deleted", status_code=303)


@router.post("/device")
async def start_sign_in(page: FormPageDep, name: Annotated[str, Form()] = "") -> Response:
    """ "Sign in with ChatGPT": a device-code login that registers a new provider as ``name``."""
    return await _start(page, name.strip(), register=True)


@router.post("/{name}/relink")
async def start_relink(name: str, page: FormPageDep) -> Response:
    return await _start(page, name, register=False)


async def _start(page: ProvidersPage, name: str, *, register: bool) -> Response:
    kept = {"device_name": name}
    if not name:
        return await page.render(error="name: give the new provider a name first", status_code=422)
    try:
        started = await page.admin.start_device_login(page.session.bearer, name, register=register)
    except AdminApiError as exc:
        return await page.refused(exc, kept)
    return await page.render(device=device_view(name, started, register=register))


@router.post("/{name}/device/poll")
async def poll_sign_in(
    name: str,
    page: FormPageDep,
    mode: Annotated[str, Form()] = "relink",
    user_code: Annotated[str, Form()] = "",
    verification_uri: Annotated[str, Form()] = "",
    interval_s: Annotated[int, Form()] = 5,
) -> Response:
    """Completes the login once approved; the page's script posts here until it is (202)."""
    registering = mode == "register"
    try:
        result = await page.admin.poll_device_login(page.session.bearer, name)
    except AdminApiError as exc:
        return await page.refused(exc)
    if result.get("status") == "linked":
        notice = "registered" if registering else "relinked"
        return RedirectResponse(f"/providers?notice={notice}", status_code=303)
    shown = {"user_code": user_code, "verification_uri": verification_uri, "interval_s": interval_s}
    device = {**device_view(name, shown, register=registering), "pending": True}
    return await page.render(device=device, status_code=202)
