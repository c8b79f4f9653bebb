"""Configuration backup and restore (admins only; tokens stay encrypted)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.backup import ConfigExport, export_config, import_config, validate_export
from codexpool_admin_api.deps import AdminDep, AuditorDep, KeyringDep
from codexpool_shared.events import PoolChangedV1
from codexpool_shared.service import KeysDep, PublisherDep, RedisDep
from codexpool_shared.store.pools import pool_from_hash

router = APIRouter(prefix="/api", tags=["backup"], responses=RESPONSES)


class ImportResult(BaseModel):
    providers: int
    agents: int
    pool_versions: dict[str, int]
    """The version each restored pool now has."""


@router.get("/export")
async def export_configuration(_: AdminDep, redis: RedisDep, keys: KeysDep) -> ConfigExport:
    """All providers (tokens as encrypted envelopes), agents (key digests only) and pools."""
    return await export_config(redis, keys)


@router.post("/import")
async def import_configuration(
    body: ConfigExport,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    keyring: KeyringDep,
    audit: AuditorDep,
    publisher: PublisherDep,
) -> ImportResult:
    """Replace the configuration with an export, all or nothing; a malformed export is refused
    (422 naming the field) and changes nothing."""
    validate_export(body, keyring)
    before = await export_config(redis, keys)
    versions = await import_config(redis, keys, body)
    had_pool = {a.id for a in before.agents if a.pool is not None}
    for agent in body.agents:
        if agent.pool is not None:
            pool = pool_from_hash(agent.id, agent.pool)
            publisher.publish(
                PoolChangedV1(
                    agent_id=agent.id,
                    change="updated" if agent.id in had_pool else "created",
                    version=versions[agent.id],
                    strategy=pool.strategy,
                    providers=pool.providers,
                    actor=admin.id,
                )
            )
    for agent_id in had_pool - versions.keys():
        publisher.publish(
            PoolChangedV1(
                agent_id=agent_id,
                change="deleted",
                version=0,
                strategy=None,
                providers=(),
                actor=admin.id,
            )
        )
    result = ImportResult(
        providers=len(body.providers), agents=len(body.agents), pool_versions=versions
    )
    await audit.record(
        admin,
        "config.import",
        "configuration",
        before={"providers": len(before.providers), "agents": len(before.agents)},
        after=result.model_dump(),
    )
    return result
