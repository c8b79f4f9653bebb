"""``/livez``, ``/readyz`` and ``/metrics``, served the same way by every service.

Liveness says the process runs; readiness says it can do its job now (its own dependencies,
checked with a short deadline) and fails at once, without checking anything, while the process
drains; metrics expose the service's own Prometheus registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import JSONResponse

from codexpool_shared.drain import Drain

ReadinessCheck = Callable[[], Awaitable[object]]
"""A coroutine that raises (or times out) when a dependency is not usable."""

PROBE_TIMEOUT_S = 1.0


async def _run_check(check: ReadinessCheck) -> bool:
    try:
        await asyncio.wait_for(check(), PROBE_TIMEOUT_S)
    except Exception:
        return False
    return True


def probe_router(
    registry: CollectorRegistry,
    checks: Callable[[Request], Mapping[str, ReadinessCheck]],
    drain: Drain,
) -> APIRouter:
    """The probe endpoints; ``checks`` gives, per request, the named readiness checks."""
    router = APIRouter(tags=["probes"], include_in_schema=False)

    @router.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        if drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        named = checks(request)
        results = await asyncio.gather(*(_run_check(c) for c in named.values()))
        status = dict(zip(named, ("ok" if ok else "failing" for ok in results), strict=True))
        ready = all(results)
        return JSONResponse(
            {"status": "ok" if ready else "failing", "checks": status},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
