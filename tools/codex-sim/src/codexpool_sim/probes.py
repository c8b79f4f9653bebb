"""``/livez``, ``/readyz`` and ``/metrics``, like every Codex Pool service.

Metrics are read from the sim's state when scraped, so the hot path counts nothing extra.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from codexpool_sim.jsonresp import OrjsonResponse
from codexpool_sim.state import Sim

_METRICS = (
    ("codexpool_sim_responses_total", "counter", "Model requests accepted, per account"),
    ("codexpool_sim_refreshes_total", "counter", "Successful refresh-token rotations"),
    ("codexpool_sim_refresh_reused_total", "counter", "Refreshes refused as refresh_token_reused"),
    ("codexpool_sim_primary_used_percent", "gauge", "Primary window used percent"),
    ("codexpool_sim_secondary_used_percent", "gauge", "Secondary window used percent"),
)


async def _ok(request: Request) -> Response:
    return OrjsonResponse({"status": "ok"})


def probe_routes(sim: Sim) -> list[Route]:
    async def metrics(request: Request) -> Response:
        values: dict[str, list[tuple[str, float]]] = {name: [] for name, _, _ in _METRICS}
        now = sim.clock.now()
        for account in sim.accounts.values():
            account.quota.roll(now)
            stats = sim.tokens.stats[account.account_id]
            secondary = account.quota.secondary
            values["codexpool_sim_responses_total"].append((account.name, account.requests))
            values["codexpool_sim_refreshes_total"].append((account.name, stats.refreshes))
            values["codexpool_sim_refresh_reused_total"].append((account.name, stats.reused))
            values["codexpool_sim_primary_used_percent"].append(
                (account.name, account.quota.primary.used_percent)
            )
            if secondary is not None:
                values["codexpool_sim_secondary_used_percent"].append(
                    (account.name, secondary.used_percent)
                )
        lines: list[str] = []
        for name, kind, help_text in _METRICS:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            lines += [f'{name}{{account="{label}"}} {value}' for label, value in values[name]]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    return [Route("/livez", _ok), Route("/readyz", _ok), Route("/metrics", metrics)]
