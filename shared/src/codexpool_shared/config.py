"""Settings every Codex Pool service shares (SPEC.md section 3).

Nothing here is built at import time: each service builds its own ``Settings`` subclass in
``main()`` (or a test builds one directly) and hands it to ``create_app(settings)``.
"""

from __future__ import annotations

import re

from pydantic import AmqpDsn, Field, RedisDsn, SecretStr, field_validator
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
    """The one Redis."""

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

    @field_validator("namespace")
    @classmethod
    def _namespace_is_a_slug(cls, value: str) -> str:
        if not _NAMESPACE.match(value):
            raise ValueError(
                "CODEXPOOL_NAMESPACE must be 1-63 characters of a-z, 0-9, '-' or '_', "
                "starting with a letter or digit"
            )
        return value

    def require_secret_key(self) -> SecretStr:
        """The secret key, or a clear error for a service that cannot run without one."""
        if self.secret_key is None or not self.secret_key.get_secret_value().strip():
            raise ValueError(
                "CODEXPOOL_SECRET_KEY is not set: give one or more comma-separated base64 keys "
                "of 32 bytes (for example: python -c 'import os,base64;"
                "print(base64.b64encode(os.urandom(32)).decode())')"
            )
        return self.secret_key
