"""Settings every Codex Pool service shares (docs/SPEC.md section 3).

Nothing here is built at import time: each service builds its own ``Settings`` subclass in
``main()`` (or a test builds one directly) and hands it to ``create_app(settings)``.
"""

from __future__ import annotations

import os
import re
from typing import Literal, get_args

from pydantic import (
    AliasChoices,
    AmqpDsn,
    Field,
    RedisDsn,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class InfraSettings(BaseSettings):
    """The infrastructure every service talks to, read from unprefixed environment variables."""

    model_config = SettingsConfigDict(
        extra="ignore", env_ignore_empty=True, frozen=True, populate_by_name=True
    )

    redis_url: RedisDsn = Field(
        default=RedisDsn("redis://127.0.0.1:6379/0"), validation_alias="REDIS_URL"
    )
    """The one Redis: a server, or with ``REDIS_CLUSTER`` any node of a Redis Cluster."""

    redis_cluster: bool = Field(default=False, validation_alias="REDIS_CLUSTER")
    """``REDIS_URL`` names a node of a Redis Cluster (managed Redis in cluster mode): the client
    discovers the other nodes and routes each call by its keys' slot (``codexpool_shared.keys``
    puts every key of a namespace in one slot)."""

    amqp_url: AmqpDsn = Field(
        default=AmqpDsn("amqp://guest:guest@127.0.0.1:5672/"), validation_alias="AMQP_URL"
    )
    """The one RabbitMQ."""

    namespace: str = Field(default="codexpool", validation_alias="CODEXPOOL_NAMESPACE")
    """Prefix of every Redis key and AMQP name; tests use a unique one each."""

    secret_key: SecretStr | None = Field(default=None, validation_alias="CODEXPOOL_SECRET_KEY")
    """Comma-separated base64 keys of 32 bytes: the first encrypts, any decrypts."""

    redis_timeout_s: float = Field(default=0.5, validation_alias="CODEXPOOL_REDIS_TIMEOUT_S", gt=0)
    """Connect and read timeout of every Redis call: a blackholed Redis costs this, not a hang."""

    drain_timeout_s: float = Field(default=30.0, ge=0, validation_alias="CODEXPOOL_DRAIN_TIMEOUT_S")
    """After SIGTERM, how long requests in flight may still run before they are ended
    (``codexpool_shared.drain``); deployment grace periods are derived from it."""

    http_keepalive_s: int = Field(default=75, ge=1, validation_alias="CODEXPOOL_HTTP_KEEPALIVE_S")
    """How long an idle client connection stays open. Longer than the idle timeout of whatever
    connects (the openai SDK's 5 s, an ingress's upstream keep-alive or a load balancer's 60 s),
    so that the client closes an idle connection first: a server that closes one as a request
    arrives on it fails that request ("server disconnected without a response"), which uvicorn's
    default (5 s, httpx's own) did now and then."""

    api_docs: bool = Field(default=False, validation_alias="CODEXPOOL_API_DOCS")
    """Serve ``/docs`` and ``/openapi.json``. Off by default: they map every route for anyone
    who can reach the service (and Swagger UI loads its assets from a CDN); development stacks
    turn them on."""

    forwarded_allow_ips: str = Field(default="", validation_alias="FORWARDED_ALLOW_IPS")
    """Comma-separated addresses or networks of the proxies whose ``X-Forwarded-For`` names the
    client (``*``: any peer, only behind a NetworkPolicy that admits the proxies alone). None by
    default: otherwise any process on the host could name the address failed sign-ins count
    under."""

    @field_validator("namespace")
    @classmethod
    def _namespace_is_a_slug(cls, value: str) -> str:
        if not _NAMESPACE.fullmatch(value):
            raise ValueError(
                "CODEXPOOL_NAMESPACE must be 1-63 characters of a-z, 0-9, '-' or '_', "
                "starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _cluster_has_no_database(self) -> InfraSettings:
        database = (self.redis_url.path or "/").strip("/")
        if self.redis_cluster and database not in ("", "0"):
            raise ValueError(
                f"REDIS_URL selects database {database}, which a Redis Cluster does not have: "
                "drop the /N path or unset REDIS_CLUSTER"
            )
        return self

    def require_secret_key(self) -> SecretStr:
        """The secret key, or a clear error for a service that cannot run without one."""
        if self.secret_key is None or not self.secret_key.get_secret_value().strip():
            raise ValueError(
                "CODEXPOOL_SECRET_KEY is not set: give one or more comma-separated base64 keys "
                "of 32 bytes (for example: python -c 'import os,base64;"
                "print(base64.b64encode(os.urandom(32)).decode())')"
            )
        return self.secret_key


class TokenRefreshSettings(BaseSettings):
    """The pool-wide token-refresh policy.

    Every service that refreshes tokens (router, admin API) subclasses this, so they all hold
    the refresh lock for the same time.
    """

    model_config = SettingsConfigDict(
        extra="ignore", env_ignore_empty=True, frozen=True, populate_by_name=True
    )

    refresh_lock_s: float = Field(
        default=15.0,
        gt=0,
        # ROUTER_REFRESH_LOCK_S is the name from when only the router refreshed.
        validation_alias=AliasChoices("CODEXPOOL_REFRESH_LOCK_S", "ROUTER_REFRESH_LOCK_S"),
    )
    """Lifetime of the refresh lock (``Keys.refresh_lock``), and how long a process waits for
    another's refresh. Every token exchange's deadline must be shorter (``TokenRefresher``
    refuses to start otherwise): a lock that expires mid-exchange lets a second process spend
    the same single-use refresh token."""


OtlpProtocol = Literal["http/protobuf", "grpc"]
"""The OTLP protocols whose exporters are installed."""
_OTLP_PROTOCOLS: tuple[OtlpProtocol, ...] = get_args(OtlpProtocol)
_EXPORTERS = frozenset({"otlp", "console", "none"})


def prefer_stable_http_conventions() -> None:
    """Ask the OTel instrumentations for the stable HTTP semantic conventions.

    ``OTEL_SEMCONV_STABILITY_OPT_IN``, when set, still decides. The router's hot routes
    (``telemetry.TracedRoute``) speak them; the instrumentations default to the old names, and
    one dashboard query should fit every HTTP span.
    """
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")


class TelemetrySettings(BaseSettings):
    """The standard ``OTEL_*`` variables that decide whether telemetry is exported at all.

    Everything else (endpoint paths, headers, timeouts, sampler, batch sizes, resource
    attributes) the OpenTelemetry SDK reads from the environment itself.
    """

    model_config = SettingsConfigDict(
        extra="ignore", env_ignore_empty=True, frozen=True, populate_by_name=True
    )

    otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    """Base OTLP endpoint for every signal."""

    otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    """OTLP endpoint for spans only."""

    otlp_metrics_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    )
    """OTLP endpoint for metrics only."""

    otlp_protocol: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL")
    """OTLP protocol for every signal: ``http/protobuf`` (the default) or ``grpc``."""

    otlp_traces_protocol: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    )
    """OTLP protocol for spans only."""

    otlp_metrics_protocol: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
    )
    """OTLP protocol for metrics only."""

    traces_exporter: str | None = Field(default=None, validation_alias="OTEL_TRACES_EXPORTER")
    """Comma-separated span exporters: ``otlp``, ``console`` or ``none``."""

    metrics_exporter: str | None = Field(default=None, validation_alias="OTEL_METRICS_EXPORTER")
    """Comma-separated metric exporters: ``otlp``, ``console`` or ``none``."""

    @property
    def span_exporters(self) -> frozenset[str]:
        """The span exporters to install; empty means spans are not exported."""
        return _exporters(
            "OTEL_TRACES_EXPORTER",
            self.traces_exporter,
            self.otlp_traces_endpoint or self.otlp_endpoint,
        )

    @property
    def metric_exporters(self) -> frozenset[str]:
        """The metric exporters to install; empty means metrics are not exported."""
        return _exporters(
            "OTEL_METRICS_EXPORTER",
            self.metrics_exporter,
            self.otlp_metrics_endpoint or self.otlp_endpoint,
        )

    @property
    def span_protocol(self) -> OtlpProtocol:
        """The OTLP protocol spans are exported with."""
        if self.otlp_traces_protocol:
            return _protocol("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", self.otlp_traces_protocol)
        return _protocol("OTEL_EXPORTER_OTLP_PROTOCOL", self.otlp_protocol)

    @property
    def metric_protocol(self) -> OtlpProtocol:
        """The OTLP protocol metrics are exported with."""
        if self.otlp_metrics_protocol:
            return _protocol("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", self.otlp_metrics_protocol)
        return _protocol("OTEL_EXPORTER_OTLP_PROTOCOL", self.otlp_protocol)

    @model_validator(mode="after")
    def _exporters_are_supported(self) -> TelemetrySettings:
        _ = self.span_exporters, self.metric_exporters, self.span_protocol, self.metric_protocol
        return self


def _protocol(variable: str, value: str | None) -> OtlpProtocol:
    # The specification's default; an unknown value fails the start, as a typo must not
    # silently lose every span.
    if value is None:
        return "http/protobuf"
    for protocol in _OTLP_PROTOCOLS:
        if value.strip().lower() == protocol:
            return protocol
    raise ValueError(
        f"{variable}: unsupported OTLP protocol {value!r} "
        f"(supported: {', '.join(sorted(_OTLP_PROTOCOLS))})"
    )


def _exporters(variable: str, names: str | None, endpoint: str | None) -> frozenset[str]:
    # Unlike the SDK's default of "otlp", nothing configured means no export: a developer
    # machine or a test without a collector must not retry a dead localhost:4318 forever.
    if names is None:
        chosen = {"otlp"} if endpoint else set()
    else:
        chosen = {name.strip().lower() for name in names.split(",") if name.strip()}
    unknown = chosen - _EXPORTERS
    if unknown:
        raise ValueError(
            f"{variable}: unsupported exporter(s) {', '.join(sorted(unknown))} "
            f"(supported: {', '.join(sorted(_EXPORTERS))})"
        )
    if "none" in chosen:
        return frozenset()
    return frozenset(chosen)
