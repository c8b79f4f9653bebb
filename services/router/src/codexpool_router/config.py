from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from codexpool_shared.config import InfraSettings, TokenRefreshSettings
from codexpool_shared.oauth import CODEX_CLIENT_ID


class Settings(InfraSettings, TokenRefreshSettings):
    """codexpool-router settings: the shared infrastructure and refresh policy plus
    ``ROUTER_*`` knobs."""

    model_config = SettingsConfigDict(
        extra="ignore", env_ignore_empty=True, frozen=True, populate_by_name=True
    )

    upstream_base_url: str = Field(
        default="https://chatgpt.com/backend-api", validation_alias="CODEXPOOL_UPSTREAM_BASE_URL"
    )
    auth_base_url: str = Field(
        default="https://auth.openai.com", validation_alias="CODEXPOOL_AUTH_BASE_URL"
    )
    oauth_client_id: str = Field(default=CODEX_CLIENT_ID, validation_alias="ROUTER_OAUTH_CLIENT_ID")

    drain_timeout_s: float = Field(
        default=600.0, ge=0, validation_alias="CODEXPOOL_DRAIN_TIMEOUT_S"
    )
    """After SIGTERM, how long streams in flight may still run: long enough for a Codex turn."""

    connect_timeout_s: float = Field(default=5.0, gt=0, validation_alias="ROUTER_CONNECT_TIMEOUT_S")
    """Per attempt: establishing the upstream connection."""
    ttfb_timeout_s: float = Field(default=30.0, gt=0, validation_alias="ROUTER_TTFB_TIMEOUT_S")
    """Per attempt: from sending the request to the upstream's first body chunk."""
    idle_timeout_s: float = Field(default=300.0, gt=0, validation_alias="ROUTER_IDLE_TIMEOUT_S")
    """Longest silence between two chunks of a stream (Codex's own stream idle timeout)."""
    deadline_s: float = Field(default=60.0, gt=0, validation_alias="ROUTER_DEADLINE_S")
    """Overall budget of a request before its answer starts (all attempts together)."""
    max_attempts: int = Field(default=3, ge=1, le=10, validation_alias="ROUTER_MAX_ATTEMPTS")
    retry_budget_percent: float = Field(
        default=20.0, ge=0, validation_alias="ROUTER_RETRY_BUDGET_PERCENT"
    )
    """Failovers allowed per replica, as a percentage of its requests over the window."""
    retry_budget_min_per_s: float = Field(
        default=10.0, ge=0, validation_alias="ROUTER_RETRY_BUDGET_MIN_PER_S"
    )
    """Failovers per second allowed on top of the percentage (a quiet replica still fails over)."""
    retry_budget_window_s: int = Field(
        default=10, ge=1, le=300, validation_alias="ROUTER_RETRY_BUDGET_WINDOW_S"
    )
    """The retry budget's sliding window (Finagle's defaults: 20 %, 10/s, 10 s)."""
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, gt=0, validation_alias="ROUTER_MAX_BODY_BYTES"
    )

    health_threshold: float = Field(default=50.0, ge=0, validation_alias="ROUTER_HEALTH_THRESHOLD")
    """Health score under which a provider's circuit opens (0 disables)."""
    circuit_failures: int = Field(default=5, ge=1, validation_alias="ROUTER_CIRCUIT_FAILURES")
    """Consecutive health faults that open a circuit."""
    circuit_base_s: float = Field(default=30.0, gt=0, validation_alias="ROUTER_CIRCUIT_BASE_S")
    circuit_max_s: float = Field(default=300.0, gt=0, validation_alias="ROUTER_CIRCUIT_MAX_S")
    circuit_grace_s: float = Field(default=120.0, ge=0, validation_alias="ROUTER_CIRCUIT_GRACE_S")
    """After a successful probe, the health score is ignored this long (it lags)."""
    probe_lock_s: float = Field(default=30.0, gt=0, validation_alias="ROUTER_PROBE_LOCK_S")
    lease_ttl_s: float = Field(default=30.0, gt=0, validation_alias="ROUTER_LEASE_TTL_S")
    """A concurrency lease's life unless renewed (every third of it while its request runs):
    how long a dead router's slots stay taken."""
    capacity_wait_s: float = Field(default=2.0, ge=0, validation_alias="ROUTER_CAPACITY_WAIT_S")
    """How long a request whose every eligible member is at its cap waits for a slot."""
    capacity_poll_s: float = Field(default=0.1, gt=0, validation_alias="ROUTER_CAPACITY_POLL_S")

    affinity_ttl_s: float = Field(default=3600.0, gt=0, validation_alias="ROUTER_AFFINITY_TTL_S")
    rate_limit_cooldown_s: float = Field(
        default=30.0, ge=0, validation_alias="ROUTER_RATE_LIMIT_COOLDOWN_S"
    )
    """Cooldown after a 429 that is not a usage limit and has no Retry-After."""
    quota_fallback_cooldown_s: float = Field(
        default=3600.0, gt=0, validation_alias="ROUTER_QUOTA_FALLBACK_COOLDOWN_S"
    )
    """Cooldown after a usage-limit 429 that names no reset."""

    refresh_window_s: float = Field(default=300.0, ge=0, validation_alias="ROUTER_REFRESH_WINDOW_S")
    """Access tokens expiring within this are refreshed ahead of time."""
    refresh_timeout_s: float = Field(
        default=10.0, gt=0, validation_alias="ROUTER_REFRESH_TIMEOUT_S"
    )
    """Deadline of one token exchange; shorter than the pool-wide ``CODEXPOOL_REFRESH_LOCK_S``."""

    quota_flush_s: float = Field(default=0.2, gt=0, validation_alias="ROUTER_QUOTA_FLUSH_S")
    """Quota snapshots from response headers are coalesced and written this often."""
    quota_poll_s: float = Field(default=300.0, ge=0, validation_alias="ROUTER_QUOTA_POLL_S")
    """How often one replica of the fleet reads ``/wham/usage`` of members cooling down for
    quota, so an early upstream reset ends their cooldown (``quota_poll.py``; 0: never)."""
    quota_poll_timeout_s: float = Field(
        default=10.0, gt=0, validation_alias="ROUTER_QUOTA_POLL_TIMEOUT_S"
    )
    """Deadline of one usage read of that poll."""
    egress_sync_s: float = Field(default=2.0, gt=0, validation_alias="ROUTER_EGRESS_SYNC_S")
    """How often the providers' egress proxies are re-read (``egress.py``)."""

    failopen_failures: int = Field(default=3, ge=1, validation_alias="ROUTER_FAILOPEN_FAILURES")
    """Consecutive Redis errors or timeouts that open the store breaker (``failopen.py``)."""
    failopen_open_s: float = Field(default=1.0, gt=0, validation_alias="ROUTER_FAILOPEN_OPEN_S")
    """How long the open breaker serves from snapshots before one request probes Redis."""
    failopen_max_staleness_s: float = Field(
        default=300.0, ge=0, validation_alias="ROUTER_FAILOPEN_MAX_STALENESS_S"
    )
    """Oldest snapshot an agent is served from while Redis fails (0: fail closed)."""
    failopen_refresh_s: float = Field(
        default=1.0, ge=0, validation_alias="ROUTER_FAILOPEN_REFRESH_S"
    )
    """How often a selection brings an agent's snapshot up to date (0: every one): the
    snapshot costs Redis about a fifth of a selection, and the local cooldowns cover what this
    replica saw since."""
    failopen_max_agents: int = Field(
        default=10_000, ge=1, validation_alias="ROUTER_FAILOPEN_MAX_AGENTS"
    )
    """Agents whose last selection this replica remembers (least recently used dropped)."""
    failopen_fault_cooldown_s: float = Field(
        default=10.0, ge=0, validation_alias="ROUTER_FAILOPEN_FAULT_COOLDOWN_S"
    )
    """Local cooldown of a member after a 5xx, connection error or timeout, for snapshot
    selections (shared circuits are not updated while Redis fails)."""

    explain: bool = Field(default=True, validation_alias="ROUTER_EXPLAIN")
    """Put the routing decision (every member and why it was tried or skipped) in each outcome
    event, for ``GET /api/requests/{request_id}``; off for a benchmark's baseline."""

    originator: str = Field(default="codex_cli_rs", validation_alias="ROUTER_ORIGINATOR")
    user_agent: str = Field(
        default="codex_cli_rs/0.169.0 (codexpool) codexpool-router",
        validation_alias="ROUTER_USER_AGENT",
    )
