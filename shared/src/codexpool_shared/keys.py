"""Every Redis key Codex Pool uses, built from the namespace, in one place.

One Redis (a single server or a Redis Cluster) serves the whole system (docs/SPEC.md section 3).
Every key starts with the namespace as a hash tag, ``{<namespace>}:``, so all keys of a namespace
hash to one cluster slot: each Lua script and MULTI touches keys of many kinds (an agent's key,
its pool, every member's record and live state), which Redis Cluster only allows within one slot.
A namespace's state is small (its registry and recent aggregates), so one slot holds it; separate
deployments or tenants use separate namespaces and spread over the cluster. Services never format
a key themselves: they ask a ``Keys``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds the Redis keys of one namespace."""

    namespace: str

    @property
    def prefix(self) -> str:
        """What every key of the namespace starts with: the namespace as a cluster hash tag."""
        return f"{{{self.namespace}}}:"

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of the namespace (tests clean up with it)."""
        return f"{self.prefix}*"

    @property
    def slot_key(self) -> str:
        """A key of the namespace's slot, declared by scripts that build their keys themselves.

        Redis Cluster routes a script by its declared keys; the selection script derives its keys
        from the agent's router key, so it declares this one (never written) to reach the node
        that holds the namespace.
        """
        return self._k("slot")

    # Registry -----------------------------------------------------------------------------

    @property
    def providers(self) -> str:
        """Set of registered provider names."""
        return self._k("providers")

    def provider(self, name: str) -> str:
        """Hash: one provider's record, tokens encrypted."""
        return self._k("provider", name)

    @property
    def agents(self) -> str:
        """Set of agent ids."""
        return self._k("agents")

    def agent(self, agent_id: str) -> str:
        """Hash: one agent's record."""
        return self._k("agent", agent_id)

    def agent_keys(self, agent_id: str) -> str:
        """Hash: SHA-256 of each router key of the agent -> key metadata (JSON)."""
        return self._k("agent", agent_id, "keys")

    def agent_keys_used(self, agent_id: str) -> str:
        """Hash: key id -> when a router last saw the key (epoch s; written once per flush)."""
        return self._k("agent", agent_id, "keys-used")

    def api_key(self, key_sha256: str) -> str:
        """String: the agent id that owns the router key with this SHA-256."""
        return self._k("apikey", key_sha256)

    def agent_requests(self, agent_id: str) -> str:
        """Sorted set with TTL: the agent's requests of the last minute (id -> epoch ms).

        The sliding window of its ``requests_per_minute`` limit.
        """
        return self._k("agent", agent_id, "rpm")

    def agent_tokens(self, agent_id: str, day: str) -> str:
        """String counter with TTL: tokens the agent used on one UTC day (days since the epoch).

        Counted while it has a ``tokens_per_day`` limit.
        """
        return self._k("agent", agent_id, "tokens", day)

    def provider_leases(self, provider: str) -> str:
        """Sorted set: a provider's in-flight streams across replicas (lease id -> expiry ms).

        Held while it has ``max_concurrent``.
        """
        return self._k("leases", provider)

    # Pools and routing state ----------------------------------------------------------------

    def pool(self, agent_id: str) -> str:
        """Hash: an agent's pool (strategy, ordered providers as JSON, version)."""
        return self._k("pool", agent_id)

    def rr_counter(self, agent_id: str) -> str:
        """String counter: the pool's round-robin position, shared by every router replica."""
        return self._k("pool", agent_id, "rr")

    def affinity(self, agent_id: str, session_digest: str) -> str:
        """String with TTL: the provider a session sticks to within a pool."""
        return self._k("affinity", agent_id, session_digest)

    def live(self, provider: str) -> str:
        """Hash: a provider's live state and the health service's verdict on it.

        The live state (quota snapshot, cooldown, circuit, failure streak) has the fields of
        ``LiveFields``; the verdict (score, band) those of ``HealthFields``: one hash, so that the
        selection reads a member's state and score in one command.
        """
        return self._k("live", provider)

    def refresh_lock(self, provider: str) -> str:
        """String lock: single-flight token refresh across replicas and services."""
        return self._k("lock", "refresh", provider)

    def probe_lock(self, provider: str) -> str:
        """String lock: the one replica probing an open circuit."""
        return self._k("lock", "probe", provider)

    @property
    def quota_poll_lock(self) -> str:
        """String lock with a TTL: the one router replica polling usage this interval."""
        return self._k("lock", "quota-poll")

    def overflow(self, agent_id: str) -> str:
        """Hash: the pool's opt-in overflow endpoint (base URL, encrypted API key)."""
        return self._k("overflow", agent_id)

    # Health aggregates ----------------------------------------------------------------------

    def event_seen(self, event_id: str) -> str:
        """String with TTL: an outcome event already applied (idempotent consumer)."""
        return self._k("seen", event_id)

    def health_totals(self, scope: str, provider: str) -> str:
        """Hash: a provider's lifetime counters within one scope (an agent id or ``ALL_POOLS``)."""
        return self._k("hagg", scope, provider, "total")

    def health_minute(self, scope: str, provider: str, minute_start: int) -> str:
        """Hash with TTL: a provider's counters and latency histogram for one minute."""
        return self._k("hagg", scope, provider, "m", str(minute_start))

    def health_hour(self, scope: str, provider: str, hour_start: int) -> str:
        """Hash with TTL: a provider's counters for one hour."""
        return self._k("hagg", scope, provider, "h", str(hour_start))

    @property
    def health_aggregates_pattern(self) -> str:
        """A SCAN pattern matching every health totals, minute and hour bucket of the namespace."""
        return self._k("hagg", "*")

    @property
    def health_providers(self) -> str:
        """Set of provider names the health service has seen outcomes for (rescored over time)."""
        return self._k("health-providers")

    @property
    def outcome_log(self) -> str:
        """Capped stream of the applied outcome events, replayed by ``codexpool-health rebuild``."""
        return self._k("outcome-log")

    def request(self, request_id: str) -> str:
        """String with TTL: one request's outcome event (its routing explanation), by request id."""
        return self._k("request", request_id)

    def recent_requests(self, agent_id: str) -> str:
        """Capped list with TTL: an agent's latest request ids, newest first."""
        return self._k("requests", agent_id)

    def quota_history(self, provider: str) -> str:
        """Capped stream: a provider's quota snapshots over time (ids = observation ms)."""
        return self._k("quota-history", provider)

    def runway_low(self, agent_id: str) -> str:
        """String with TTL: a pool's runway-low episode is open (its event was published)."""
        return self._k("runway-low", agent_id)

    # Admin ------------------------------------------------------------------------------------

    def admin_token(self, token_sha256: str) -> str:
        """Hash: an admin API bearer token (stored by SHA-256) and its role."""
        return self._k("admin-token", token_sha256)

    @property
    def admin_tokens(self) -> str:
        """Hash: admin API token id -> the SHA-256 its ``admin_token`` record is stored under."""
        return self._k("admin-tokens")

    def auth_failures(self, client: str) -> str:
        """String counter with TTL: failed admin API authentications from one client address."""
        return self._k("admin-auth-failures", client)

    def oauth_device(self, provider: str) -> str:
        """Hash with TTL: a pending device-code login re-linking a provider."""
        return self._k("oauth-device", provider)

    @property
    def audit(self) -> str:
        """Stream: the audit log."""
        return self._k("audit")

    # UI ---------------------------------------------------------------------------------------

    def ui_session(self, session_sha256: str) -> str:
        """Hash with TTL: a signed-in UI session (stored by the SHA-256 of its cookie's id)."""
        return self._k("ui-session", session_sha256)
