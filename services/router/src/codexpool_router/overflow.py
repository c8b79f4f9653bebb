"""The pool's opt-in overflow endpoint: the last resort when no member is eligible (issue 19).

``failover.serve`` asks :func:`serve_overflow` just before it would answer that the pool is
exhausted, and only when no member can serve: none was eligible, or every one tried met its
usage limit. Then, if the pool names an overflow (``store/overflow.py``; one Redis read, on this
path only, never on a request a member serves), the request goes to ``{base_url}/responses``
with the overflow's key, and its answer is relayed as a member's would be, with
``x-codexpool-provider: overflow``. Its attempt is recorded under the provider name ``overflow``
(metrics, spans, the outcome event, which also says ``overflow: true``); it has no live state.

When the overflow fails too (5xx, unreachable), the request ends with the answer it would have
had without one (the documented 429, or 503); a 4xx of the overflow is the client's answer,
as a member's would be. Compact requests have no overflow (the remote compaction is Codex's),
nor has a request routed from the fail-open snapshot (the store that holds the overflow does not
answer then).
"""

from __future__ import annotations

import time

from codexpool_router.answers import Send
from codexpool_router.attempt import run_attempt
from codexpool_router.core import Core
from codexpool_router.endings import client_error
from codexpool_router.inbound import Inbound
from codexpool_router.outcome import Ledger
from codexpool_router.relay import deliver
from codexpool_router.shutdown import InFlight
from codexpool_shared.store.overflow import OVERFLOW, overflow_target
from codexpool_shared.store.selection import Candidate, Selection

_CANDIDATE = Candidate(OVERFLOW, "", "", None, 0, probe=False, failures=0)


async def serve_overflow(
    core: Core,
    send: Send,
    ledger: Ledger,
    inbound: Inbound,
    selection: Selection,
    inflight: InFlight,
    deadline: float,
) -> bool:
    """Answer through the pool's overflow if it has one and no member could serve.

    Returns:
        Whether the client has its answer.
    """
    if inbound.dialect == "compact" or any(a.outcome != "usage_limit" for a in ledger.attempts):
        return False
    if selection.fallback:
        return False  # routed from the fail-open snapshot: the store is not answering
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        return False
    try:
        target = await overflow_target(core.redis, core.keys, core.keyring, selection.agent_id)
    except Exception:
        # The store or the key failed: answer as without an overflow (counted, never raised).
        core.metrics.background_errors.inc()
        return False
    if target is None:
        return False
    ledger.overflow = True
    headers = {
        "Authorization": f"Bearer {target.api_key}",
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "x-client-request-id": ledger.request_id,
    }
    result = await ledger.attempted(
        _CANDIDATE,
        "POST responses",
        {},
        run_attempt(
            core.session,
            target.base_url + "/responses",
            inbound.body,
            headers,
            budget_s=min(core.settings.ttfb_timeout_s, remaining),
            client_timeout=core.client_timeout,
            stream=inbound.stream,
            unary=False,
        ),
    )
    if result.outcome == "success":
        await deliver(core, send, ledger, inbound, _CANDIDATE, result, inflight)
        return True
    if result.outcome == "client_error":
        inflight.answering = True
        await client_error(send, ledger, _CANDIDATE, result)
        return True
    return False
