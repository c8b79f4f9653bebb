"""The Codex backend's model route and its plain OpenAI twin, as one raw ASGI endpoint."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from codexpool_sim import errors, responder, transcript
from codexpool_sim.accounts import Account, models_for_plan
from codexpool_sim.asgi import JSON, Headers, read_body, send_bytes, send_json
from codexpool_sim.config import MismatchPolicy
from codexpool_sim.faults import FaultKind, FaultSpec
from codexpool_sim.recording import Recorded
from codexpool_sim.state import Sim
from codexpool_sim.validation import validate

DEFAULT_MODEL = "gpt-5-codex"
MODELS_ETAG = b'"codex-sim-models-1"'


def auth_headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    authorization = account_id = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"chatgpt-account-id":
            account_id = value
    return authorization, account_id


def admit(sim: Sim, scope: Scope, rec: Recorded) -> tuple[Account | None, int, errors.Body | None]:
    """The account a backend request reached, or the status and body that turn it away."""
    authorization, claimed = auth_headers(scope)
    account, code = sim.authenticate(authorization)
    rec.account_id = account.account_id if account is not None else None
    if code is not None or account is None:
        return None, 401, errors.token_error(code or "token_invalidated")
    if claimed is not None and sim.mismatch is not MismatchPolicy.IGNORE:
        if claimed.decode("latin-1") != account.account_id:
            status = 401 if sim.mismatch is MismatchPolicy.REJECT_401 else 403
            return None, status, errors.account_mismatch()
    return account, 200, None


class ResponsesEndpoint:
    """``POST /backend-api/codex/responses`` (validated) or ``POST /v1/responses``."""

    def __init__(self, sim: Sim, *, codex: bool) -> None:
        self.sim = sim
        self.codex = codex

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sim = self.sim
        admitted = await self._admitted(scope, receive, send)
        if admitted is None:
            return
        account, rec, request = admitted
        if not isinstance(request, dict):
            rec.status = 400
            return await send_json(send, 400, errors.detail("Request body must be a JSON object"))
        model = _model(request)
        if self.codex:
            problem = validate(
                sim.validation,
                request,
                account.allowed_models or models_for_plan(account.plan_type),
            )
            if problem is not None:
                rec.status = 400
                return await send_json(send, 400, problem)
        fault = account.faults.take(sim.rng)
        now = sim.clock.now()
        if await self._turned_away(send, rec, account, fault, model, now):
            return
        quota = account.quota
        rid = sim.next_response_id()
        headers = quota.headers(account.plan_type, now)
        headers += [
            (b"x-request-id", b"req_" + rid[5:]),
            (b"openai-model", model.encode()),
            (b"x-models-etag", MODELS_ETAG),
        ]
        streaming = request.get("stream") is True
        answer = self._transcript(account, model, fault, streaming)
        ids = (rid, str(int(now)).encode())
        latency = (account.ttfb_ms, account.event_delay_ms)
        deliver = responder.stream if streaming else responder.unary
        await deliver(send, receive, headers, answer, ids, latency, fault)

    async def _admitted(
        self, scope: Scope, receive: Receive, send: Send
    ) -> tuple[Account, Recorded, Any] | None:
        """Record the request and authenticate it: the account, the record and the decoded
        body (None if it is not JSON), or None once the request has been turned away."""
        sim = self.sim
        body = await read_body(receive)
        rec = sim.recorder.record(
            "POST", scope["path"], scope["query_string"], scope["headers"], body, sim.clock.now()
        )
        account, status, problem = admit(sim, scope, rec)
        if account is None:
            rec.status = status
            await send_json(send, status, problem)
            return None
        try:
            return account, rec, orjson.loads(body)
        except orjson.JSONDecodeError:
            return account, rec, None

    async def _turned_away(
        self,
        send: Send,
        rec: Recorded,
        account: Account,
        fault: FaultSpec | None,
        model: str,
        now: float,
    ) -> bool:
        """Count the request, then answer an HTTP-level fault or a spent quota (True), or
        charge the request to the account's quota and record it as answered (False)."""
        account.requests += 1
        if fault is not None:
            rec.fault = fault.kind.value
            if await self._refuse(send, rec, account, fault, model):
                return True
        quota = account.quota
        quota.roll(now)
        if quota.exhausted():
            rec.status = 429
            limit_headers = quota.headers(account.plan_type, now)
            await send_json(send, 429, quota.limit_error(account.plan_type, now), limit_headers)
            return True
        quota.charge()
        rec.status = 200
        return False

    def _transcript(
        self, account: Account, model: str, fault: FaultSpec | None, streaming: bool
    ) -> transcript.Transcript:
        kind = fault.kind if fault is not None else None
        if fault is not None and kind in (FaultKind.RESPONSE_FAILED, FaultKind.ERROR_EVENT):
            code = fault.code or "server_error"
            message = fault.message or "An error occurred while processing your request."
            return transcript.failed(
                model, code, message, error_event=kind is FaultKind.ERROR_EVENT
            )
        # The backend quirk empties only the streamed ``response.completed``.
        quirk = streaming and self.codex and account.style.codex_empty_output
        full = kind is not FaultKind.EMPTY_OUTPUT and not quirk
        reason = (
            fault.reason if kind is FaultKind.RESPONSE_INCOMPLETE and fault is not None else None
        )
        return self.sim.transcripts.get(
            account.style.shape(model, full_output=full, incomplete_reason=reason)
        )

    async def _refuse(
        self, send: Send, rec: Recorded, account: Account, fault: FaultSpec, model: str
    ) -> bool:
        """Answer an HTTP-level fault; False for faults that bend the stream instead."""
        kind = fault.kind
        now = self.sim.clock.now()
        status: int
        body: Any
        headers: Headers = []
        if kind is FaultKind.HTTP_ERROR:
            status, body = fault.status, errors.overloaded(fault.code, fault.message)
        elif kind is FaultKind.RATE_LIMIT:
            status, body = 429, errors.rate_limited(model, fault.retry_after_s)
            headers = [(b"retry-after", str(fault.retry_after_s).encode())]
        elif kind is FaultKind.USAGE_LIMIT:
            status = 429
            quota = account.quota
            quota.roll(now)
            saved = quota.primary.used_percent
            quota.primary.used_percent = 100.0
            body = quota.limit_error(account.plan_type, now)
            headers = quota.headers(account.plan_type, now)
            quota.primary.used_percent = saved
        elif kind is FaultKind.TOKEN_EXPIRED:
            status, body = 401, errors.token_error("token_expired")
        elif kind is FaultKind.CLOUDFLARE_403:
            rec.status = 403
            await send_bytes(
                send,
                403,
                [(b"content-type", b"text/html; charset=UTF-8"), (b"server", b"cloudflare")],
                errors.CLOUDFLARE_HTML,
            )
            return True
        else:
            return False
        rec.status = status
        await send_bytes(send, status, [JSON, *headers], orjson.dumps(body))
        return True


class CompactEndpoint(ResponsesEndpoint):
    """``POST /backend-api/codex/responses/compact`` or ``POST /v1/responses/compact``: remote
    compaction (protocol 3.1), one JSON answer whose ``output`` replaces the history.

    The answer keeps the input's user messages and adds one opaque ``compaction`` item, the
    shape of the public ``response.compaction`` object. Authentication, quota, HTTP-level
    faults and recording are the model route's; faults that bend a stream do not apply.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sim = self.sim
        admitted = await self._admitted(scope, receive, send)
        if admitted is None:
            return
        account, rec, request = admitted
        if not isinstance(request, dict) or not isinstance(request.get("input"), list):
            rec.status = 400
            return await send_json(send, 400, errors.detail("input must be a list of items"))
        fault = account.faults.take(sim.rng)
        now = sim.clock.now()
        if await self._turned_away(send, rec, account, fault, _model(request), now):
            return
        rid = sim.next_response_id().decode()
        kept = [
            item
            for item in request["input"]
            if isinstance(item, dict)
            and item.get("type", "message") == "message"
            and item.get("role") == "user"
        ]
        answer = {
            "id": rid,
            "object": "response.compaction",
            "created_at": int(now),
            "output": [
                *kept,
                {
                    "id": "cmp_" + rid[5:],
                    "type": "compaction",
                    "encrypted_content": "gAAAAB-codex-sim-compacted-history",
                },
            ],
            "usage": account.style.usage.view(),
        }
        await send_json(send, 200, answer, account.quota.headers(account.plan_type, now))


def _model(request: dict[str, Any]) -> str:
    model = request.get("model")
    return model if isinstance(model, str) and model else DEFAULT_MODEL
