"""A router started with a key that does not decrypt the stored credentials says so: readiness
fails naming ``secret_key``, and requests get an OpenAI-shaped 503, never an opaque 500."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx

from codexpool_shared.testing.processes import ServiceSpec, run_services
from tests.e2e.router.conftest import Pool, Sim


async def test_a_wrong_secret_key_fails_readiness_and_answers_a_clear_503(
    sim: Sim, pool: Pool, router_env: dict[str, str], tmp_path: Path
) -> None:
    await pool.setup(sim, [1, 2])
    wrong = {**router_env, "CODEXPOOL_SECRET_KEY": base64.b64encode(os.urandom(32)).decode()}
    spec = ServiceSpec("codexpool_router", wrong, ready_path="/livez", name="router-wrong-key")
    with run_services([spec], log_dir=tmp_path / "logs") as [router]:
        headers = {"Authorization": f"Bearer {pool.api_key}"}
        async with httpx.AsyncClient(base_url=router.url, timeout=10) as client:
            ready = await client.get("/readyz")
            answer = await client.post("/v1/responses", json={"model": "m"}, headers=headers)
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"redis": "ok", "secret_key": "failing"}
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "secret_key_mismatch"
    assert answer.json()["error"]["type"] == "service_unavailable_error"
    assert answer.headers["x-request-id"].startswith("req_")
    assert answer.headers["x-should-retry"] == "false"
    assert sim.requests() == [], "nothing was sent upstream"
