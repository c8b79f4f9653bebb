"""``codexpool-sim --accounts 3 --port 8090 --write-auth DIR``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from codexpool_sim.accounts import write_auth_files
from codexpool_sim.app import create_app
from codexpool_sim.config import MismatchPolicy, SimConfig
from codexpool_sim.server import uvicorn_config


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="codexpool-sim", description="A fake ChatGPT Codex backend and OAuth issuer."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument(
        "--write-auth",
        type=Path,
        metavar="DIR",
        help="write DIR/account-<n>.auth.json and DIR/accounts.json",
    )
    parser.add_argument(
        "--plans", default="plus", help="comma-separated plan types, assigned to accounts in turn"
    )
    parser.add_argument("--seed", type=int, help="makes account ids reproducible")
    parser.add_argument(
        "--primary-cost",
        type=float,
        default=SimConfig.primary_cost_percent,
        help="percent per request",
    )
    parser.add_argument("--secondary-cost", type=float, default=SimConfig.secondary_cost_percent)
    parser.add_argument("--ttfb-ms", type=int, default=0)
    parser.add_argument("--event-delay-ms", type=int, default=0)
    parser.add_argument("--access-ttl-s", type=int, default=SimConfig.access_ttl_s)
    parser.add_argument("--record-limit", type=int, default=SimConfig.record_limit)
    parser.add_argument(
        "--account-id-mismatch",
        choices=[p.value for p in MismatchPolicy],
        default=SimConfig.account_id_mismatch.value,
    )
    parser.add_argument("--workspace-backend-origin", help="origin /wham/accounts/check advertises")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    config = SimConfig(
        accounts=args.accounts,
        plans=tuple(p.strip() for p in args.plans.split(",") if p.strip()),
        seed=args.seed,
        primary_cost_percent=args.primary_cost,
        secondary_cost_percent=args.secondary_cost,
        ttfb_ms=args.ttfb_ms,
        event_delay_ms=args.event_delay_ms,
        access_ttl_s=args.access_ttl_s,
        record_limit=args.record_limit,
        account_id_mismatch=MismatchPolicy(args.account_id_mismatch),
        workspace_backend_origin=args.workspace_backend_origin,
    )
    app = create_app(config)
    files = write_auth_files(app.accounts, args.write_auth) if args.write_auth else []
    for i, account in enumerate(app.accounts):
        where = f" {files[i]}" if files else ""
        print(
            f"{account.name} {account.account_id} {account.email} {account.plan_type}{where}",
            flush=True,
        )
    print(f"codexpool-sim listening on http://{args.host}:{args.port}", flush=True)
    uvicorn.Server(uvicorn_config(app, args.host, args.port, args.log_level)).run()


if __name__ == "__main__":
    main()
