from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from codexpool_health.app import create_app
from codexpool_health.config import Settings
from codexpool_health.rebuild import rebuild
from codexpool_health.scoring import ScoreConfig
from codexpool_health.store import HealthStore
from codexpool_shared.cli import serve
from codexpool_shared.keys import Keys
from codexpool_shared.redis import open_redis


async def _rebuild(settings: Settings) -> None:
    redis = await open_redis(settings)
    try:
        store = HealthStore(
            redis,
            Keys(settings.namespace),
            score=ScoreConfig.from_settings(settings),
            seen_ttl_s=settings.dedupe_ttl_s,
        )
        report = await rebuild(redis, Keys(settings.namespace), store)
    finally:
        await redis.aclose()
    print(
        f"rebuilt namespace {settings.namespace!r}: deleted {report.deleted_keys} keys, "
        f"replayed {report.replayed} events ({report.skipped} unreadable), "
        f"rescored {report.providers} providers"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["rebuild"]:
        argparse.ArgumentParser(
            prog="codexpool-health rebuild",
            description="Delete the namespace's health aggregates and replay the outcome log "
            "into them (stop the health consumers first).",
        ).parse_args(args[1:])
        asyncio.run(_rebuild(Settings()))
        return
    serve(
        "codexpool-health",
        8083,
        Settings,
        lambda settings, drain: create_app(settings, drain=drain),
        args,
    )


if __name__ == "__main__":
    main()
