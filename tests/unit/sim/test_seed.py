"""codexpool-sim-seed: the demo pool from codex-sim's auth files, the same on every run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from codexpool_sim.accounts import write_auth_files
from codexpool_sim.app import create_app
from codexpool_sim.config import SimConfig
from codexpool_sim.seed import SeedError, main, seed_demo


class FakeAdminApi:
    """The admin API routes the seed calls, with providers, agents and pools in dicts."""

    def __init__(self) -> None:
        self.providers: dict[str, Any] = {}
        self.agents: dict[str, str] = {}
        self.pools: dict[str, Any] = {}
        self.writes: list[str] = []
        self.keys = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer admin-token"
        path, method = request.url.path, request.method
        if method != "GET":
            self.writes.append(f"{method} {path}")
        parts = path.strip("/").split("/")
        table: dict[str, Any] = self.providers if parts[1] == "providers" else self.agents
        if method in ("GET", "DELETE") and len(parts) == 3:
            if parts[2] not in table:
                return httpx.Response(404, json={})
            if method == "DELETE":
                in_use = [a for a, pool in self.pools.items() if parts[2] in pool["providers"]]
                assert parts[1] == "agents" or not in_use, "the admin API refuses: in a pool"
                del table[parts[2]]
                self.pools.pop(parts[2], None)
                return httpx.Response(204)
            if parts[1] == "providers":
                return httpx.Response(
                    200, json={"account_id": table[parts[2]]["tokens"]["account_id"]}
                )
            return httpx.Response(200, json={"id": parts[2]})
        body = json.loads(request.content)
        if path == "/api/providers":
            self.providers[body["name"]] = body["auth_json"]
            return httpx.Response(201, json={"name": body["name"]})
        if path == "/api/agents":
            self.keys += 1
            self.agents[body["id"]] = key = f"cpk_{self.keys}"
            return httpx.Response(201, json={"id": body["id"], "api_key": key})
        if method == "PUT" and parts[-1] == "codex-pool":
            self.pools[parts[2]] = body
            return httpx.Response(200, json=body)
        return httpx.Response(404, json={})


@pytest.fixture
def auth_dir(tmp_path: Path) -> Path:
    write_auth_files(create_app(SimConfig(accounts=3, seed=7)).accounts, tmp_path)
    return tmp_path


def test_the_first_run_registers_every_account_and_the_agent(auth_dir: Path) -> None:
    api = FakeAdminApi()
    client = httpx.Client(transport=httpx.MockTransport(api), headers=_ADMIN, base_url="http://a")
    seeded = seed_demo(client, auth_dir)
    names = [f"chatgpt-oauth-account-{n}" for n in (1, 2, 3)]
    assert seeded.providers == names and seeded.agent == "demo-agent"
    assert seeded.api_key == api.agents["demo-agent"]
    assert api.providers[names[0]] == json.loads((auth_dir / "account-1.auth.json").read_text())
    assert api.pools == {"demo-agent": {"strategy": "round-robin", "providers": names}}


def test_a_second_run_keeps_what_exists(auth_dir: Path) -> None:
    api = FakeAdminApi()
    client = httpx.Client(transport=httpx.MockTransport(api), headers=_ADMIN, base_url="http://a")
    seed_demo(client, auth_dir)
    api.writes.clear()
    again = seed_demo(client, auth_dir)
    assert again.api_key is None
    assert api.writes == ["PUT /api/agents/demo-agent/codex-pool"]


def test_a_restarted_sims_new_accounts_replace_the_forgotten_ones(
    auth_dir: Path, tmp_path: Path
) -> None:
    api = FakeAdminApi()
    client = httpx.Client(transport=httpx.MockTransport(api), headers=_ADMIN, base_url="http://a")
    first = seed_demo(client, auth_dir)
    restarted = tmp_path / "restarted"
    write_auth_files(create_app(SimConfig(accounts=3, seed=8)).accounts, restarted)
    again = seed_demo(client, restarted)
    assert again.providers == first.providers
    assert again.api_key and again.api_key != first.api_key
    stored = api.providers["chatgpt-oauth-account-2"]
    assert stored == json.loads((restarted / "account-2.auth.json").read_text())
    assert api.pools["demo-agent"]["providers"] == first.providers


def test_missing_auth_files_are_a_clear_error(tmp_path: Path) -> None:
    client = httpx.Client(transport=httpx.MockTransport(FakeAdminApi()), base_url="http://a")
    with pytest.raises(SeedError, match="no codex-sim accounts"):
        seed_demo(client, tmp_path)


def test_the_command_fails_when_the_files_never_appear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CODEXPOOL_ADMIN_TOKEN", "admin-token")
    assert main(["--auth-dir", str(tmp_path / "none"), "--wait-s", "0"]) == 1
    assert "did not appear" in capsys.readouterr().err


_ADMIN = {"Authorization": "Bearer admin-token"}
