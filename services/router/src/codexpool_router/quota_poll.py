"""The low-rate poll that lets an early upstream reset end a quota cooldown (issue 19).

A member cooling down for quota gets no traffic, so no response headers can show that the
upstream reset its usage early (team resets, plan changes); it would stay out until the old
``resets_at``, for days on a weekly window. Every ``quota_poll_s`` one replica of the fleet (a
lock with that TTL in ``Keys.quota_poll_lock``: whoever takes it polls, the others skip this
round) reads ``/wham/usage`` of each registered provider that is cooling down for quota and
writes what it read like any other snapshot: ``write_quotas`` ends the cooldown when the
snapshot is newer than it and shows capacity, and every replica's next selection sees that.

Members are read one after another (a handful of usage reads per interval at most, never a
burst against the upstream). A failed read (expired token, 5xx, unreachable) is skipped: the
cooldown simply runs as before; tokens are not refreshed here, a request or Refresh Live State
does that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.metrics import Metrics
from codexpool_router.refresh import Tokens
from codexpool_shared.keys import Keys
from codexpool_shared.store import get_live, write_quotas
from codexpool_shared.store.credentials import read_credentials
from codexpool_shared.store.live import CooldownReason, QuotaSnapshot
from codexpool_shared.usage import parse_usage

log = logging.getLogger(__name__)

SessionFor = Callable[[str], aiohttp.ClientSession]
"""The HTTP session that reaches a provider's upstream (its egress)."""


class QuotaPoller:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: Settings,
        tokens: Tokens,
        session_for: SessionFor,
        metrics: Metrics,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._tokens = tokens
        self._session_for = session_for
        self._metrics = metrics
        self._usage_url = settings.upstream_base_url.rstrip("/") + "/wham/usage"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._settings.quota_poll_s > 0:
            self._task = asyncio.create_task(self._loop(), name="quota-poll")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.quota_poll_s)
            try:
                await self.poll()
            except Exception:
                self._metrics.background_errors.inc()
                log.warning("quota poll failed", exc_info=True)

    async def poll(self) -> frozenset[str] | None:
        """One round, if this replica takes the round's lock.

        Returns:
            The providers whose quota cooldown it ended, or None when another replica polls
            this round.
        """
        ttl_ms = max(1, int(self._settings.quota_poll_s * 1000 * 0.9))
        if not await self._redis.set(self._keys.quota_poll_lock, "1", nx=True, px=ttl_ms):
            return None
        now_ms = time.time_ns() // 1_000_000
        names = sorted(
            n.decode() if isinstance(n, bytes) else n
            for n in await self._redis.smembers(self._keys.providers)
        )
        cleared: set[str] = set()
        for name in names:
            live = await get_live(self._redis, self._keys, name)
            if live.cooldown_reason != CooldownReason.QUOTA or live.cooldown_until_ms <= now_ms:
                continue
            snapshot = await self._read(name)
            if snapshot is None:
                continue
            writes = await write_quotas(self._redis, self._keys, {name: snapshot})
            if name in writes.cleared:
                cleared.add(name)
                log.info("fresh quota ended a quota cooldown", extra={"provider": name})
        return frozenset(cleared)

    async def _read(self, name: str) -> QuotaSnapshot | None:
        """The provider's usage now, or None when it cannot be read (skipped this round)."""
        creds = await read_credentials(self._redis, self._keys, name)
        if creds.status != "active" or not creds.access_token:
            return None
        headers = {
            "Authorization": f"Bearer {self._tokens.access_token(name, creds.access_token)}",
            "Accept": "application/json",
            "originator": self._settings.originator,
            "User-Agent": self._settings.user_agent,
        }
        if creds.account_id:
            headers["chatgpt-account-id"] = creds.account_id
        timeout = aiohttp.ClientTimeout(total=self._settings.quota_poll_timeout_s)
        try:
            async with self._session_for(name).get(
                self._usage_url, headers=headers, timeout=timeout
            ) as resp:
                # Observed when the answer arrived, as header snapshots are.
                observed_ms = time.time_ns() // 1_000_000
                if resp.status != 200:
                    return None
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        return parse_usage(doc, observed_at_ms=observed_ms) if isinstance(doc, dict) else None
