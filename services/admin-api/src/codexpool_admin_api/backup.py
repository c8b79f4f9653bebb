"""Export and import of the whole configuration: providers (tokens and egress proxy URL still
encrypted), agents with their router key digests, pools and their overflow endpoints (the key
still encrypted).

The records are copied as stored, so an export restores exactly. An import is all or nothing:
the whole document is validated first (every envelope must decrypt with the configured keys
under its own record and field, every pool member must be in the document), then the old
configuration is replaced in one MULTI/EXEC, watched so that a concurrent change aborts it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import WatchError

from codexpool_shared.crypto import DecryptionError, Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store import TOKEN_FIELDS, validate_name
from codexpool_shared.store.agents import AgentFields, AgentKey
from codexpool_shared.store.egress import EgressFields, parse_proxy
from codexpool_shared.store.errors import Conflict, InvalidField
from codexpool_shared.store.overflow import OverflowFields, validate_base_url
from codexpool_shared.store.pools import PRIORITIES, STRATEGIES, PoolFields
from codexpool_shared.store.providers import SLUG_PATTERN, ProviderFields, validate_identity
from codexpool_shared.store.replies import decode_hash, text

_STATUSES = ("active", "needs_reauth", "disabled")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def _date_time_text(value: object) -> object:
    # pydantic would read a number as epoch seconds; the document (and its schema) says a string.
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 date-time string")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportedProvider(_Strict):
    name: str = Field(pattern=SLUG_PATTERN)
    record: dict[str, str]
    """The stored record; ``access_token``, ``refresh_token``, ``id_token`` are envelopes."""


class ExportedAgent(_Strict):
    id: str = Field(pattern=SLUG_PATTERN)
    record: dict[str, str]
    key_digests: dict[str, str]
    """SHA-256 of each router key -> its metadata; the keys themselves are never stored."""
    pool: dict[str, str] | None
    overflow: dict[str, str] | None = None
    """The pool's overflow endpoint: ``base_url``, and ``api_key`` as an envelope. Absent or
    null: none (exports made before it was exported restore without one)."""


class ConfigExport(_Strict):
    format: Literal["codexpool-config"] = "codexpool-config"
    version: Literal[1] = 1
    exported_at: Annotated[datetime, BeforeValidator(_date_time_text)]
    providers: list[ExportedProvider] = Field(max_length=10_000)
    agents: list[ExportedAgent] = Field(max_length=10_000)


def _hash(record: dict[str, str]) -> Mapping[Any, Any]:
    # redis-py types hset's mapping with invariant keys, which a dict[str, str] never matches.
    return record


async def export_config(redis: Redis, keys: Keys) -> ConfigExport:
    providers = sorted(text(n) for n in await redis.smembers(keys.providers))
    agents = sorted(text(a) for a in await redis.smembers(keys.agents))
    async with redis.pipeline(transaction=True) as pipe:
        for name in providers:
            pipe.hgetall(keys.provider(name))
        for agent in agents:
            pipe.hgetall(keys.agent(agent))
            pipe.hgetall(keys.agent_keys(agent))
            pipe.hgetall(keys.pool(agent))
            pipe.hgetall(keys.overflow(agent))
        replies = iter(await pipe.execute())
    exported_providers = [
        ExportedProvider(name=name, record=decode_hash(next(replies))) for name in providers
    ]
    exported_agents = []
    for agent in agents:
        record, digests, pool, overflow = (decode_hash(next(replies)) for _ in range(4))
        exported_agents.append(
            ExportedAgent(
                id=agent,
                record=record,
                key_digests=digests,
                pool=pool or None,
                overflow=overflow or None,
            )
        )
    return ConfigExport(
        exported_at=datetime.now(UTC),
        providers=[p for p in exported_providers if p.record],
        agents=[a for a in exported_agents if a.record],
    )


def validate_export(doc: ConfigExport, keyring: Keyring) -> None:
    """Raise ``InvalidField`` naming the first thing wrong with ``doc``; write nothing."""
    names: set[str] = set()
    for i, provider in enumerate(doc.providers):
        where = f"providers[{i}]"
        validate_name(provider.name, f"{where}.name")
        if provider.name in names:
            raise InvalidField(f"{where}.name", f"{provider.name!r} is listed twice")
        names.add(provider.name)
        record = provider.record
        _positive(record, ProviderFields.MAX_CONCURRENT, f"{where}.record")
        if record.get("name") != provider.name:
            raise InvalidField(f"{where}.record.name", "must equal the provider's name")
        if record.get("status") not in _STATUSES:
            raise InvalidField(f"{where}.record.status", f"must be one of {_STATUSES}")
        validate_identity(
            record.get("account_id"),
            record.get("email"),
            record.get("plan_type"),
            f"{where}.record",
        )
        for field in TOKEN_FIELDS:
            envelope = record.get(field, "")
            if not envelope and field == "id_token":
                continue
            try:
                keyring.decrypt(envelope, record=provider.name, field=field)
            except DecryptionError:
                raise InvalidField(
                    f"{where}.record.{field}",
                    "is not a token envelope this service's keys decrypt for this provider",
                ) from None
        _validate_proxy(record, keyring, provider.name, f"{where}.record")
    digests: set[str] = set()
    agent_ids: set[str] = set()
    for i, agent in enumerate(doc.agents):
        where = f"agents[{i}]"
        validate_name(agent.id, f"{where}.id")
        if agent.id in agent_ids:
            raise InvalidField(f"{where}.id", f"{agent.id!r} is listed twice")
        agent_ids.add(agent.id)
        if not agent.record.get("name"):
            raise InvalidField(f"{where}.record.name", "must be non-empty")
        if not agent.record.get("created_at", "").isdigit():
            raise InvalidField(f"{where}.record.created_at", "must be epoch seconds")
        _validate_limits(agent.record, f"{where}.record")
        for digest, meta in agent.key_digests.items():
            if not _DIGEST.fullmatch(digest) or digest in digests:
                raise InvalidField(f"{where}.key_digests", "holds a malformed or repeated digest")
            digests.add(digest)
            try:
                AgentKey.model_validate_json(meta)
            except ValidationError:
                raise InvalidField(f"{where}.key_digests", "holds malformed key metadata") from None
        if agent.pool is not None:
            _validate_pool(agent.pool, names, f"{where}.pool")
        if agent.overflow is not None:
            _validate_overflow(agent.overflow, keyring, agent.id, f"{where}.overflow")


def _validate_proxy(record: Mapping[str, str], keyring: Keyring, name: str, where: str) -> None:
    """A provider's egress proxy: an envelope of a usable URL for this provider, shown as the
    record says (the router would otherwise send the provider's traffic nowhere)."""
    envelope = record.get(EgressFields.PROXY_URL)
    if envelope is None:
        if EgressFields.PROXY in record:
            raise InvalidField(f"{where}.{EgressFields.PROXY}", "has no proxy_url beside it")
        return
    try:
        target = parse_proxy(keyring.decrypt(envelope, record=name, field=EgressFields.PROXY_URL))
    except (DecryptionError, InvalidField):
        raise InvalidField(
            f"{where}.{EgressFields.PROXY_URL}",
            "is not a usable proxy URL envelope this service's keys decrypt for this provider",
        ) from None
    if record.get(EgressFields.PROXY) != target.shown:
        raise InvalidField(f"{where}.{EgressFields.PROXY}", "must be the proxy URL as shown")


def _validate_overflow(
    overflow: Mapping[str, str], keyring: Keyring, agent_id: str, where: str
) -> None:
    """A pool's overflow: a usable base URL and an envelope of its key for this agent."""
    known = {OverflowFields.BASE_URL, OverflowFields.API_KEY}
    if set(overflow) != known:
        raise InvalidField(where, f"must hold exactly {sorted(known)}")
    url = overflow[OverflowFields.BASE_URL]
    if validate_base_url(url, f"{where}.{OverflowFields.BASE_URL}") != url:
        raise InvalidField(f"{where}.{OverflowFields.BASE_URL}", "must not end with a slash")
    try:
        keyring.decrypt(
            overflow[OverflowFields.API_KEY], record=agent_id, field=OverflowFields.API_KEY
        )
    except DecryptionError:
        raise InvalidField(
            f"{where}.{OverflowFields.API_KEY}",
            "is not a key envelope this service's keys decrypt for this agent",
        ) from None


def _positive(record: Mapping[str, str], field: str, where: str) -> None:
    value = record.get(field)
    if value is not None and not (value.isdigit() and int(value) > 0):
        raise InvalidField(f"{where}.{field}", "must be a positive integer")


def _json(record: Mapping[str, str], field: str, where: str, kind: type) -> Any:
    try:
        value = orjson.loads(record[field])
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, kind):
        raise InvalidField(f"{where}.{field}", f"must be a JSON {kind.__name__}")
    return value


def _validate_limits(record: Mapping[str, str], where: str) -> None:
    """The selection script reads an agent's limits on every request: a malformed one would
    fail every request of that agent, so an import refuses it."""
    for field in (
        AgentFields.LIMIT_REQUESTS_PER_MINUTE,
        AgentFields.LIMIT_TOKENS_PER_DAY,
        AgentFields.LIMIT_EXPIRES_AT,
    ):
        _positive(record, field, where)
    if AgentFields.LIMIT_MODELS in record:
        models = _json(record, AgentFields.LIMIT_MODELS, where, list)
        if not models or not all(isinstance(m, str) and m for m in models):
            raise InvalidField(f"{where}.{AgentFields.LIMIT_MODELS}", "must list model names")


def _validate_pool(pool: dict[str, str], providers: set[str], where: str) -> None:
    if pool.get("strategy") not in STRATEGIES:
        raise InvalidField(f"{where}.strategy", f"must be one of {STRATEGIES}")
    if not pool.get("version", "").isdigit():
        raise InvalidField(f"{where}.version", "must be a non-negative integer")
    try:
        members = orjson.loads(pool.get("providers", ""))
    except orjson.JSONDecodeError:
        raise InvalidField(f"{where}.providers", "must be a JSON list of names") from None
    if not isinstance(members, list):
        raise InvalidField(f"{where}.providers", "must be a JSON list of names")
    for j, member in enumerate(members):
        if member not in providers or member in members[:j]:
            raise InvalidField(
                f"{where}.providers[{j}]", "must be a provider of this export, listed once"
            )
    if PoolFields.PRIORITIES in pool:
        priorities = _json(pool, PoolFields.PRIORITIES, where, dict)
        if not all(v in PRIORITIES for v in priorities.values()):
            raise InvalidField(f"{where}.{PoolFields.PRIORITIES}", f"values: one of {PRIORITIES}")
    if pool.get(PoolFields.EARLIEST_RESET, "1") != "1":
        raise InvalidField(f"{where}.{PoolFields.EARLIEST_RESET}", "must be 1 or absent")


async def import_config(redis: Redis, keys: Keys, doc: ConfigExport) -> dict[str, int]:
    """Replace the configuration with ``doc`` (validated); returns each new pool's version.

    Pool versions move forward past both the current and the exported version, so every
    router replica sees each restored pool as a change.
    """
    async with redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(keys.providers, keys.agents)
            old_providers = [text(n) for n in await pipe.smembers(keys.providers)]
            old_agents = [text(a) for a in await pipe.smembers(keys.agents)]
            per_agent = [
                k for a in old_agents for k in (keys.agent_keys(a), keys.pool(a), keys.overflow(a))
            ]
            if per_agent:
                await pipe.watch(*per_agent)
            old_digests = [
                text(d) for a in old_agents for d in await pipe.hkeys(keys.agent_keys(a))
            ]
            old_versions = {
                a: int(await pipe.hget(keys.pool(a), "version") or 0) for a in old_agents
            }
            versions = {
                agent.id: max(old_versions.get(agent.id, 0), int(agent.pool["version"])) + 1
                for agent in doc.agents
                if agent.pool is not None
            }
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.delete(
                keys.providers,
                keys.agents,
                *(keys.provider(n) for n in old_providers),
                *(keys.agent(a) for a in old_agents),
                *(keys.agent_keys(a) for a in old_agents),
                *(keys.pool(a) for a in old_agents),
                *(keys.overflow(a) for a in old_agents),
                *(keys.api_key(d) for d in old_digests),
            )
            for provider in doc.providers:
                pipe.hset(keys.provider(provider.name), mapping=_hash(provider.record))
                pipe.sadd(keys.providers, provider.name)
            for agent in doc.agents:
                pipe.hset(keys.agent(agent.id), mapping=_hash(agent.record))
                pipe.sadd(keys.agents, agent.id)
                for digest, meta in agent.key_digests.items():
                    pipe.hset(keys.agent_keys(agent.id), digest, meta)
                    pipe.set(keys.api_key(digest), agent.id)
                if agent.pool is not None:
                    pool = dict(agent.pool, version=str(versions[agent.id]))
                    pipe.hset(keys.pool(agent.id), mapping=_hash(pool))
                if agent.overflow is not None:
                    pipe.hset(keys.overflow(agent.id), mapping=_hash(agent.overflow))
            await pipe.execute()
        except WatchError:
            raise Conflict("body", "the configuration changed during the import; retry") from None
    return versions
