"""Two router processes on a private three-node Redis Cluster (``REDIS_CLUSTER``), codex-sim
upstream: the shared round-robin, failover and the live state all work through the cluster."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis

from codexpool_shared.config import InfraSettings
from codexpool_shared.keys import Keys
from codexpool_shared.redis import open_redis
from codexpool_shared.store import get_live
from codexpool_shared.testing.redis_cluster import PrivateRedisCluster, private_redis_cluster
from tests.e2e.router.conftest import Pool, Sim

STREAM = {"model": "gpt-5-codex", "input": "hi", "stream": True}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedisCluster]:
    with private_redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as started:
        yield started


@pytest.fixture
async def redis(cluster: PrivateRedisCluster, namespace: str) -> AsyncIterator[Redis]:
    """The store the routers use: the cluster, through the services' own client."""
    settings = InfraSettings.model_validate(
        {"REDIS_URL": cluster.url, "REDIS_CLUSTER": True, "CODEXPOOL_NAMESPACE": namespace}
    )
    client = await open_redis(settings)
    yield client
    async for key in client.scan_iter(match=Keys(namespace).pattern, count=500):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def router_env(router_env: dict[str, str], cluster: PrivateRedisCluster) -> dict[str, str]:
    # The second node: the client must discover the cluster, not just talk to the node named.
    return {
        **router_env,
        "REDIS_URL": f"redis://127.0.0.1:{cluster.ports[1]}/0",
        "REDIS_CLUSTER": "true",
    }


async def test_two_routers_share_round_robin_and_fail_over_through_a_cluster(
    sim: Sim, pool: Pool, routers
) -> None:
    await pool.setup(sim, [1, 2, 3])
    first, second = routers(2)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    served: list[str] = []
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        for i in range(30):
            router = (first, second)[i % 2]
            response = await client.post(f"{router.url}/v1/responses", json=STREAM)
            assert response.status_code == 200, response.text
            served.append(response.headers["x-codexpool-provider"])
        # One counter in the cluster for both replicas: exact rotation.
        assert Counter(served) == {"account-1": 10, "account-2": 10, "account-3": 10}

        sim.fault(1, kind="http_error", status=500, count=2)
        after: list[tuple[str, str]] = []
        for _ in range(6):
            response = await client.post(f"{first.url}/v1/responses", json=STREAM)
            assert response.status_code == 200, response.text
            after.append(
                (response.headers["x-codexpool-provider"], response.headers["x-codexpool-attempts"])
            )
        # account-1's two turns failed over to the next member; no client saw the 500s.
        assert sum(1 for _, attempts in after if attempts == "2") == 2, after

        refused = await client.post(
            f"{second.url}/v1/responses",
            json=STREAM,
            headers={"Authorization": "Bearer cpk_unknown"},
        )
        assert refused.status_code == 401

    live = await get_live(pool.redis, pool.keys, "account-2")
    assert live.quota is not None, "the routers' quota snapshots reached the cluster"
