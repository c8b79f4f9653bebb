"""Every key of a namespace lands in one Redis Cluster slot, and no other namespace's key does."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from redis.crc import key_slot

from codexpool_shared.config import InfraSettings
from codexpool_shared.keys import Keys


def _every_key(keys: Keys) -> Iterator[str]:
    """Each key kind ``Keys`` builds, with sample arguments (a new kind is covered by itself)."""
    for name, member in inspect.getmembers(type(keys)):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            yield member.fget(keys)  # type: ignore[misc]
        elif inspect.isfunction(member):
            arity = len(inspect.signature(member).parameters) - 1
            yield member(keys, *(f"arg{i}:{{x}}" for i in range(arity)))


def test_every_key_of_a_namespace_shares_one_slot() -> None:
    keys = Keys("prod-eu")
    built = list(_every_key(keys))
    assert len(built) > 20
    assert all(key.startswith("{prod-eu}:") for key in built)
    assert {key_slot(key.encode()) for key in built} == {key_slot(b"prod-eu")}


def test_namespaces_spread_over_the_cluster() -> None:
    slots = {key_slot(Keys(f"tenant-{n}").provider("p").encode()) for n in range(50)}
    assert len(slots) > 40


def test_the_scan_pattern_matches_only_the_namespace() -> None:
    keys = Keys("a")
    assert keys.pattern == "{a}:*"
    assert keys.health_aggregates_pattern.startswith(keys.prefix)


def test_a_cluster_has_no_database_to_select() -> None:
    assert InfraSettings.model_validate({"REDIS_URL": "redis://h:1/0", "REDIS_CLUSTER": True})
    with pytest.raises(ValueError, match="database 3"):
        InfraSettings.model_validate({"REDIS_URL": "redis://h:1/3", "REDIS_CLUSTER": True})
    assert InfraSettings.model_validate({"REDIS_URL": "redis://h:1/3"}).redis_cluster is False
