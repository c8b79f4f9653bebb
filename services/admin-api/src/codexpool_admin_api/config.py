from __future__ import annotations

from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from codexpool_shared.config import InfraSettings, TokenRefreshSettings


class Settings(InfraSettings, TokenRefreshSettings):
    """codexpool-admin-api settings: the shared infrastructure and refresh policy plus
    ``ADMIN_*`` knobs."""

    model_config = SettingsConfigDict(
        extra="ignore", env_ignore_empty=True, frozen=True, populate_by_name=True
    )

    admin_token: SecretStr | None = Field(default=None, validation_alias="CODEXPOOL_ADMIN_TOKEN")
    """Bootstrap admin bearer token; without it only tokens created through the API work."""

    upstream_base_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("https://chatgpt.com/backend-api"),
        validation_alias="CODEXPOOL_UPSTREAM_BASE_URL",
    )
    """The Codex backend; Refresh Live State reads ``{this}/wham/usage``."""

    auth_base_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("https://auth.openai.com"), validation_alias="CODEXPOOL_AUTH_BASE_URL"
    )
    """The OAuth issuer: token refresh and device-code re-linking."""

    auth_failures_per_window: int = Field(
        default=10, validation_alias="ADMIN_AUTH_FAILURES_PER_WINDOW", ge=1
    )
    """Failed authentications one client address may make per window before getting 429."""

    auth_failure_window_s: int = Field(
        default=60, validation_alias="ADMIN_AUTH_FAILURE_WINDOW_S", ge=1
    )
    """Length of the failed-authentication window."""

    upstream_timeout_s: float = Field(
        default=5.0, validation_alias="ADMIN_UPSTREAM_TIMEOUT_S", gt=0
    )
    """Deadline of each upstream call (usage fetch, token refresh, device-code step)."""

    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, validation_alias="ADMIN_MAX_BODY_BYTES", ge=1024
    )
    """Largest request body accepted (an import of every provider is the big one)."""

    audit_max_entries: int = Field(
        default=10_000, validation_alias="ADMIN_AUDIT_MAX_ENTRIES", ge=100
    )
    """Approximate length the audit stream is trimmed to."""
