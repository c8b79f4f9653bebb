"""A private Redis Cluster of three primaries from Debian's ``redis-server``, for the cluster tier.

::

    with private_redis_cluster(tmp_path) as cluster:
        env = {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true"}

Each node is a ``PrivateRedis`` with ``cluster-enabled``, on a client port and a cluster-bus port
both chosen free (``cluster-port``: the default bus port, client port + 10000, can fall outside
the port range). ``redis-cli --cluster create`` assigns the 16384 slots over the three with no
replicas; the block starts once every node reports ``cluster_state:ok`` and they all agree on the
slot map. Every node is killed when the block ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import redis

from codexpool_shared.testing.processes import free_port
from codexpool_shared.testing.redis_server import PrivateRedis

NODES = 3


def _node(directory: Path) -> PrivateRedis:
    return PrivateRedis(
        directory,
        [
            *("--cluster-enabled", "yes", "--cluster-port", str(free_port())),
            *("--cluster-config-file", str(directory / "nodes.conf")),
            *("--cluster-node-timeout", "5000"),
        ],
    )


def _cluster_info(node: PrivateRedis) -> dict[str, str]:
    with redis.Redis(port=node.port, socket_timeout=2, socket_connect_timeout=0.5) as client:
        text = cast(bytes, client.execute_command("CLUSTER", "INFO")).decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class PrivateRedisCluster:
    """Three ``redis-server`` primaries forming one cluster, on free ports."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [_node(directory / f"node-{i}") for i in range(NODES)]

    @property
    def url(self) -> str:
        """``REDIS_URL`` for the services under test: one node, the client finds the others."""
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        """The client port of every node."""
        return [node.port for node in self.nodes]

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the nodes, create the cluster and wait until every node serves every slot."""
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=max(1.0, deadline - time.monotonic()),
        )
        while not all(self._ready(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def _ready(self, node: PrivateRedis) -> bool:
        info = _cluster_info(node)
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_slots_ok") == "16384"
            and info.get("cluster_known_nodes") == str(NODES)
        )

    def kill(self) -> None:
        """SIGKILL every node."""
        for node in self.nodes:
            node.kill()


@contextlib.contextmanager
def private_redis_cluster(directory: Path) -> Iterator[PrivateRedisCluster]:
    """A started private Redis Cluster, killed when the block ends."""
    cluster = PrivateRedisCluster(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.kill()
