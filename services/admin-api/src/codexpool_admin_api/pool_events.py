"""What follows every pool change: the audit entry and the ``pool.changed.v1`` event."""

from __future__ import annotations

from codexpool_admin_api.audit import Auditor
from codexpool_admin_api.auth import Principal
from codexpool_admin_api.models import PoolOut, pool_out
from codexpool_shared.events import PoolChange, PoolChangedV1
from codexpool_shared.messaging import Publisher
from codexpool_shared.store.pools import Pool


async def pool_changed(
    actor: Principal,
    audit: Auditor,
    publisher: Publisher,
    change: PoolChange,
    before: Pool | None,
    after: Pool,
) -> PoolOut:
    out = pool_out(after)
    await audit.record(
        actor,
        f"pool.{change}",
        after.agent_id,
        before=None if before is None else pool_out(before).model_dump(),
        after=out.model_dump(),
    )
    publisher.publish(
        PoolChangedV1(
            agent_id=after.agent_id,
            change=change,
            version=after.version,
            strategy=after.strategy,
            providers=after.providers,
            actor=actor.id,
        )
    )
    return out
