"""The demo pool: codex-sim's accounts registered with the admin API, and one agent using them.

``make demo`` (scripts/demo.py) and compose's one-shot ``init`` service both call
``seed_demo``. It reads what ``codexpool-sim --write-auth DIR`` wrote (``accounts.json`` and one
``auth.json`` per account) and is idempotent: a provider or agent that exists is kept, and the
pool is set to round-robin over the accounts on every run. Providers of accounts that codex-sim
no longer has (it makes new ones whenever it restarts) are replaced, and the agent made anew.

``codexpool-sim-seed --auth-dir DIR`` runs it from the command line; the admin API's address
and token come from ``CODEXPOOL_ADMIN_API_URL`` and ``CODEXPOOL_ADMIN_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from codexpool_sim.config import SeedSettings

DEMO_AGENT = "demo-agent"


class SeedError(Exception):
    """The admin API refused a step, or the auth files are missing."""


@dataclass(frozen=True, slots=True)
class Seeded:
    """What the demo pool is made of."""

    providers: list[str]
    agent: str
    api_key: str | None
    """The agent's router key when this run created the agent; None when it was kept."""


def _call(client: httpx.Client, method: str, path: str, body: object = None) -> dict[str, Any]:
    response = client.request(method, path, json=body)
    if response.status_code >= 400:
        raise SeedError(
            f"admin API {method} {path} answered {response.status_code}: {response.text}"
        )
    return dict(response.json()) if response.content else {}


def _find(client: httpx.Client, path: str) -> dict[str, Any] | None:
    response = client.get(path)
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise SeedError(f"admin API GET {path} answered {response.status_code}: {response.text}")
    return dict(response.json())


def _drop_stale(
    client: httpx.Client, accounts: list[dict[str, Any]], agent: str
) -> dict[str, dict[str, Any] | None]:
    """The registered providers; those of accounts codex-sim no longer has are deleted.

    codex-sim keeps its accounts in memory and makes new ones whenever it starts, so after a
    restart the stored tokens are for accounts it has forgotten. Their providers are replaced,
    and the agent whose pool holds them is made anew (a pool cannot be emptied).
    """
    registered = {
        account["name"]: _find(client, f"/api/providers/chatgpt-oauth-{account['name']}")
        for account in accounts
    }
    stale = [
        account["name"]
        for account in accounts
        if (found := registered[account["name"]]) and found["account_id"] != account["account_id"]
    ]
    if stale and _find(client, f"/api/agents/{agent}") is not None:
        _call(client, "DELETE", f"/api/agents/{agent}")
    for name in stale:
        _call(client, "DELETE", f"/api/providers/chatgpt-oauth-{name}")
        registered[name] = None
    return registered


def seed_demo(client: httpx.Client, auth_dir: Path, agent: str = DEMO_AGENT) -> Seeded:
    """Register every account in ``auth_dir`` and give ``agent`` a round-robin pool of them.

    Args:
        client: Calls the admin API, with an admin token.
        auth_dir: What ``codexpool-sim --write-auth`` wrote.
        agent: The agent's id.

    Returns:
        The providers, in pool order, and the agent's key if it was created now.

    Raises:
        SeedError: The admin API refused a step, or ``auth_dir`` has no accounts.
    """
    try:
        accounts = json.loads((auth_dir / "accounts.json").read_text())["accounts"]
    except (OSError, ValueError, KeyError) as exc:
        raise SeedError(f"no codex-sim accounts in {auth_dir}: {exc}") from None
    registered = _drop_stale(client, accounts, agent)
    names = []
    for account in accounts:
        name = f"chatgpt-oauth-{account['name']}"
        if registered[account["name"]] is None:
            document = json.loads((auth_dir / account["auth_file"]).read_text())
            _call(client, "POST", "/api/providers", {"name": name, "auth_json": document})
        names.append(name)
    api_key = None
    if _find(client, f"/api/agents/{agent}") is None:
        created = _call(client, "POST", "/api/agents", {"id": agent, "name": "Demo agent"})
        api_key = str(created["api_key"])
    pool = {"strategy": "round-robin", "providers": names}
    _call(client, "PUT", f"/api/agents/{agent}/codex-pool", pool)
    return Seeded(names, agent, api_key)


def _wait_for_accounts(auth_dir: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (auth_dir / "accounts.json").is_file():
        if time.monotonic() > deadline:
            raise SeedError(f"{auth_dir}/accounts.json did not appear within {timeout_s:.0f} s")
        time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codexpool-sim-seed", description=__doc__.splitlines()[0])
    parser.add_argument("--auth-dir", type=Path, required=True, help="codex-sim's --write-auth")
    parser.add_argument("--agent", default=DEMO_AGENT)
    parser.add_argument("--wait-s", type=float, default=60.0, help="for the auth files")
    args = parser.parse_args(argv)
    settings = SeedSettings()
    headers = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    try:
        _wait_for_accounts(args.auth_dir, args.wait_s)
        with httpx.Client(base_url=settings.admin_api_url, headers=headers, timeout=20) as client:
            seeded = seed_demo(client, args.auth_dir, args.agent)
    except (SeedError, httpx.HTTPError) as exc:
        sys.stderr.write(f"codexpool-sim-seed: {exc}\n")
        return 1
    lines = [f"agent {seeded.agent}: round-robin over {', '.join(seeded.providers)}"]
    if seeded.api_key:
        lines.append(f"agent key (shown once, at creation): {seeded.api_key}")
    else:
        lines.append(f"agent {seeded.agent} existed: its key was shown when it was created")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
