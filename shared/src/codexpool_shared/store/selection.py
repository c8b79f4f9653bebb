"""Authentication and provider selection in one Redis round trip (``select.lua``).

The router calls it on every request; it lives here, beside the live state, because the script
reads and writes the hashes this package owns (its field names are rendered from
``LiveFields``, ``PoolFields``, ``ProviderFields`` and ``HealthFields``; the circuit it opens on a
low health score uses the same backoff as ``live.record_failure``, ``circuit.lua``).

Contract of the script (EVALSHA, KEYS[1] ``Keys.slot_key``; ARGV):
  1 SHA-256 of the agent key, 2 now (epoch ms), 3 session digest or '', 4 max attempts,
  5 health threshold (0 = ignore scores), 6 circuit grace ms, 7 affinity TTL ms,
  8 probe lock ms, 9 circuit base ms, 10 circuit max ms, 11 the namespace's key prefix
  (``Keys.prefix``; the rest of every key is rendered into the script from ``Keys``, so one
  script serves every namespace), 12 model, 13 request id, 14 lease TTL ms, 15 where a token's
  tag starts (``TOKEN_TAG_START``), 16 '1' to have the member snapshot ``m`` in the reply.
It first applies the agent's limits (``agents.py``): refused when expired, for a model outside
its list, with its day's tokens spent, or with ``requests_per_minute`` requests in the last 60 s
(the window records this request otherwise).
It resolves the agent, reads its pool, every member's record and live state (with its health
score), applies eligibility (active; no cooldown; circuit closed, or half-open and this caller
won the probe lock), orders by strategy with session affinity first, INCRs the round-robin counter
(rotation over the *eligible* members), records the affinity, and returns JSON:
``{"e": "unauthorized"}``, ``{"e": "no_pool", "a": agent}``, ``{"e": "agent_expired" |
"model_not_allowed", "a"}``, ``{"e": "agent_limit", "a", "l" limit name, "r" ms when it
frees}`` or
``{"a", "s" strategy, "v" version, "n" pool size, "c" [[name, account_id, token tag,
access_expires_at, credential_version, probe 0/1, failures, max_concurrent (0: no
cap)]...] (at most min(pool size, max attempts); a capped member with every slot leased is left
out, and the first candidate's lease ``<request id>:<name>`` is taken; ``leases.py``), "b"
members left out at their cap, "q" earliest quota-cooldown end ms (0 none), "w" earliest end of
any other unavailability ms, "d" members not active, "m" (only when ARGV 16 asks for it)
[[name, account_id, token tag, access_expires_at, credential_version, unavailable until ms (0:
eligible or half-open), 1 if that is a quota cooldown, quota pressure, priority rank (0
burn_first, 1 normal, 2 preserve)]...] (every active member, in pool order: the router's
fail-open snapshot), "x" [[name, reason, until ms]...] (members the hard filter skipped, in pool
order; reason ``cooldown:<cause>``, ``circuit_open``, ``probe_in_progress`` or the status of a
member not active), "y" [name...] (eligible members left out of ``c``, at their cap or past the
attempt limit, in the strategy's order), "k" 1 when the first candidate is the session's
provider}``: the request's explanation (``explain.py``) is read from ``c``, ``x``, ``y`` and
``k``; "t" 1 when the agent's tokens are counted (it has a ``tokens_per_day`` limit).

A member's quota windows are read only in a quota-aware pool, and the snapshot only when the
router asks for it (:meth:`Selector.select`'s ``snapshot``): about a fifth of the script's cost
for a pool of 3, a third for 12 (``bench/redis_cost.py``).

The reply never carries an access token, only its *tag* (:func:`token_tag`, ARGV 15): the end
of the encrypted envelope, the AES-GCM authentication tag, which differs for every encryption. The
router keeps decrypted tokens by tag and reads an envelope only when the tag is new to it, so a
reply is a few hundred bytes instead of two envelopes (about 1 KB each) per member, which cost
Redis about a quarter of the script's time to encode.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from codexpool_shared.activity import HealthFields
from codexpool_shared.events import Strategy
from codexpool_shared.keys import Keys
from codexpool_shared.store.agents import AgentFields
from codexpool_shared.store.lane import Lane
from codexpool_shared.store.live import LiveFields
from codexpool_shared.store.pools import PoolFields, parse_strategy
from codexpool_shared.store.providers import ProviderFields
from codexpool_shared.store.scripts import LuaScript, render

TOKEN_TAG_START: Final = -22
"""Where an encrypted access token's tag starts, from its end: the last 22 base64url characters
hold the envelope's 16-byte AES-GCM tag."""


def token_tag(envelope: str) -> str:
    """The tag of an encrypted access token, as the selection script reports it."""
    return envelope[TOKEN_TAG_START:]


def _lua_string(text: str) -> str:
    if not text.isascii() or not text.isprintable() or "'" in text or "\\" in text:
        raise ValueError(f"a key part Lua cannot take literally: {text!r}")
    return f"'{text}'"


def _key_table() -> str:
    """The Lua table ``T``: every key the script builds, as ``Keys`` spells it.

    Each entry is the key after the namespace's prefix, split where the script puts its own
    parts (an agent id, a provider name, a day).
    """
    sentinel = Keys("\1")
    templates = {
        "api_key": sentinel.api_key("\0"),
        "agent": sentinel.agent("\0"),
        "agent_requests": sentinel.agent_requests("\0"),
        "agent_tokens": sentinel.agent_tokens("\0", "\0"),
        "pool": sentinel.pool("\0"),
        "rr_counter": sentinel.rr_counter("\0"),
        "provider": sentinel.provider("\0"),
        "live": sentinel.live("\0"),
        "affinity": sentinel.affinity("\0", "\0"),
        "probe_lock": sentinel.probe_lock("\0"),
        "provider_leases": sentinel.provider_leases("\0"),
    }
    entries = []
    for name, template in templates.items():
        parts = template.removeprefix(sentinel.prefix).split("\0")
        entries.append(f"{name} = {{{', '.join(_lua_string(part) for part in parts)}}}")
    return "local T = {" + ", ".join(entries) + "}\n"


_SCRIPT = LuaScript.of(
    render(
        _key_table() + resources.files(__package__).joinpath("select.lua").read_text(),
        LiveFields,
        PoolFields,
        ProviderFields,
        HealthFields,
        AgentFields,
    )
)


class SelectionSettings(Protocol):
    """The settings the script runs with (the router's ``Settings`` has them)."""

    @property
    def max_attempts(self) -> int:
        """Most candidates returned."""

    @property
    def health_threshold(self) -> float:
        """A health score under this opens the circuit (0: scores are ignored)."""

    @property
    def circuit_grace_s(self) -> float:
        """After a circuit closes, how long scores cannot reopen it."""

    @property
    def affinity_ttl_s(self) -> float:
        """How long a session sticks to its provider."""

    @property
    def probe_lock_s(self) -> float:
        """How long the replica probing a half-open circuit holds it."""

    @property
    def circuit_base_s(self) -> float:
        """The first circuit opening; each further one doubles it."""

    @property
    def circuit_max_s(self) -> float:
        """The longest circuit opening."""

    @property
    def lease_ttl_s(self) -> float:
        """How long a concurrency lease lives unless renewed (``leases.py``)."""


class Unauthorized(Exception):
    """The agent key is unknown."""


class AgentRefused(Exception):
    """The agent's own limits refuse the request.

    ``code`` is ``agent_expired``, ``model_not_allowed`` or ``agent_limit``.
    """

    def __init__(self, agent_id: str, code: str, limit: str | None, until_ms: int) -> None:
        super().__init__(code)
        self.agent_id = agent_id
        self.code = code
        self.limit = limit
        """The limit reached (``requests_per_minute`` or ``tokens_per_day``)."""
        self.until_ms = until_ms
        """When a request would be accepted again (epoch ms; 0: not by waiting)."""


class NoPool(Exception):
    """The agent has no pool configured."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(agent_id)
        self.agent_id = agent_id


@dataclass(frozen=True, slots=True)
class Candidate:
    """A provider the request may go to, in the order to try them."""

    name: str
    account_id: str
    token_tag: str
    """Identifies its current access token (:func:`token_tag`)."""
    access_expires_at: int | None
    credential_version: int
    probe: bool
    failures: int
    max_concurrent: int = 0
    """Its concurrency cap (0: none): the first candidate holds a lease from the script, a
    later one must take one (``leases.acquire``) before it is tried."""


@dataclass(frozen=True, slots=True)
class Member:
    """An active pool member as a selection last saw it (``parse_members``)."""

    name: str
    account_id: str
    token_tag: str
    access_expires_at: int | None
    credential_version: int
    unavailable_until_ms: int
    """End of its known cooldown or open circuit; 0 when it was eligible (or half-open)."""
    quota: bool
    """The unavailability is a usage-limit cooldown."""
    pressure: float
    """Quota pressure, lower is better (quota-aware pools; 0 otherwise)."""
    rank: int = 1
    """Priority rank: 0 burn_first, 1 normal, 2 preserve (tried in that order)."""


@dataclass(frozen=True, slots=True)
class Selection:
    """The authenticated agent, its pool and the candidates (see the module for the fields)."""

    agent_id: str
    strategy: Strategy
    pool_version: int
    pool_size: int
    candidates: tuple[Candidate, ...]
    quota_wait_ms: int
    other_wait_ms: int
    inactive: int
    members: Sequence[Any] = field(default=(), repr=False, compare=False)
    """The script's member rows, unparsed, when the selection asked for them (``snapshot``):
    read (``parse_members``) only when the store fails."""
    skipped: Sequence[Any] = field(default=(), repr=False, compare=False)
    """The script's skipped-member rows, unparsed: read by ``explain.decision`` after the answer."""
    passed: Sequence[str] = field(default=(), repr=False, compare=False)
    """Eligible members left out of the candidates (at their cap or past the attempt limit)."""
    sticky: bool = False
    """The first candidate is the provider the request's session sticks to."""
    at_capacity: int = 0
    """Eligible members left out because every one of their slots is leased."""
    count_tokens: bool = False
    """The agent has a ``tokens_per_day`` limit: its usage is added after the answer."""
    fallback: bool = False
    """Made by the router from its local snapshot because the store did not answer."""


class Selector:
    """Runs the selection script with the router's settings.

    With a :class:`~codexpool_shared.store.lane.Lane` (the router's), selections started in the
    same turn of the event loop go to Redis in one write on the lane's own connection, and their
    replies come back in one read: every script still runs alone and in arrival order, so
    nothing about a selection changes but its cost. A busy router's selections cost Redis about a
    fifth less each (``bench/redis_cost.py``), and each costs the router a fraction of a call
    through the client. Without one (a replay, a Redis Cluster, whose pipelines refuse
    EVALSHA), each selection is its own call.
    """

    def __init__(
        self, redis: Redis, keys: Keys, settings: SelectionSettings, lane: Lane | None = None
    ) -> None:
        self._redis = redis
        self._sha = _SCRIPT.sha
        self._slot_key = keys.slot_key
        # The arguments that never change go as bytes: redis-py encodes nothing again per call.
        self._fixed = _encoded(
            settings.max_attempts,
            settings.health_threshold,
            int(settings.circuit_grace_s * 1000),
            int(settings.affinity_ttl_s * 1000),
            int(settings.probe_lock_s * 1000),
            int(settings.circuit_base_s * 1000),
            int(settings.circuit_max_s * 1000),
            keys.prefix,
        )
        self._tail = _encoded(int(settings.lease_ttl_s * 1000), TOKEN_TAG_START)
        self._lane = lane

    async def select(
        self,
        key_digest: str,
        now_ms: int,
        session_digest: str,
        model: str = "",
        request_id: str = "",
        *,
        snapshot: bool = True,
        alone: bool = False,
    ) -> Selection:
        """Authenticate the agent by its key's SHA-256 and select its candidates.

        ``model`` is checked against the agent's allowed models; ``request_id`` (unique per
        request) enters its requests-per-minute window; ``snapshot`` asks for every active
        member's row (:attr:`Selection.members`); ``alone`` says that no other selection can
        join this one's write to Redis (``Lane.call``).

        Raises:
            Unauthorized: The key is unknown.
            NoPool: The agent has no pool.
            AgentRefused: The agent's limits refuse the request.
        """
        argv = (
            key_digest,
            now_ms,
            session_digest,
            *self._fixed,
            model,
            request_id or secrets.token_hex(12),
            *self._tail,
            b"1" if snapshot else b"0",
        )
        try:
            if self._lane is not None:
                reply = await self._lane.call(self._sha, 1, self._slot_key, *argv, alone=alone)
            else:
                # EVALSHA directly rather than through redis-py's Script object, whose per-call
                # isinstance check against a Protocol-based class costs more than the call.
                reply = await self._redis.evalsha(self._sha, 1, self._slot_key, *argv)
        except NoScriptError:
            # A restarted or failed-over Redis has an empty script cache.
            reply = await self._redis.eval(_SCRIPT.source, 1, self._slot_key, *argv)
        return parse_selection(orjson.loads(reply))

    async def aclose(self) -> None:
        """Give the lane's connection back (``Redis.aclose`` would close it too)."""
        if self._lane is not None:
            await self._lane.aclose()


def _encoded(*values: str | int | float) -> tuple[bytes, ...]:
    """``values`` as redis-py would send them (``repr`` of a number, UTF-8 of a string)."""
    return tuple((v if isinstance(v, str) else repr(v)).encode() for v in values)


def _expiry(value: Any) -> int | None:
    return int(float(value)) if value not in ("", None) else None


def parse_selection(doc: dict[str, Any]) -> Selection:
    """The script's JSON reply as a :class:`Selection`; raises as :meth:`Selector.select`."""
    error = doc.get("e")
    if error == "unauthorized":
        raise Unauthorized()
    if error == "no_pool":
        raise NoPool(str(doc["a"]))
    if error is not None:
        raise AgentRefused(str(doc["a"]), str(error), doc.get("l"), int(doc.get("r") or 0))
    rows = doc.get("c") or []
    return Selection(
        agent_id=str(doc["a"]),
        strategy=parse_strategy(doc["s"]),
        pool_version=int(doc.get("v") or 0),
        pool_size=int(doc.get("n") or 0),
        candidates=tuple(
            Candidate(
                name=str(r[0]),
                account_id=str(r[1]),
                token_tag=str(r[2]),
                access_expires_at=_expiry(r[3]),
                credential_version=int(r[4] or 0),
                probe=bool(r[5]),
                failures=int(r[6] or 0),
                max_concurrent=int(r[7] or 0),
            )
            for r in rows
        ),
        quota_wait_ms=int(doc.get("q") or 0),
        other_wait_ms=int(doc.get("w") or 0),
        inactive=int(doc.get("d") or 0),
        members=doc.get("m") or (),
        skipped=doc.get("x") or (),
        passed=doc.get("y") or (),
        sticky=bool(doc.get("k")),
        count_tokens=bool(doc.get("t")),
        at_capacity=int(doc.get("b") or 0),
    )


def parse_members(rows: Sequence[Any]) -> tuple[Member, ...]:
    """The ``m`` rows of a selection (:attr:`Selection.members`) as :class:`Member` records."""
    return tuple(
        Member(
            name=str(r[0]),
            account_id=str(r[1]),
            token_tag=str(r[2]),
            access_expires_at=_expiry(r[3]),
            credential_version=int(r[4] or 0),
            unavailable_until_ms=int(r[5] or 0),
            quota=bool(r[6]),
            pressure=float(r[7] or 0),
            rank=int(r[8]),
        )
        for r in rows
    )
