from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from codexpool_shared.config import InfraSettings


class Settings(InfraSettings):
    """codexpool-ui settings: the shared infrastructure plus ``UI_*`` knobs.

    The UI keeps no state: it needs only the admin API's address and ``CODEXPOOL_SECRET_KEY``,
    from which it derives the keys of its session cookies.
    """

    model_config = SettingsConfigDict(
        extra="ignore", env_ignore_empty=True, frozen=True, populate_by_name=True
    )

    admin_api_url: str = Field(
        default="http://127.0.0.1:8081", validation_alias="CODEXPOOL_ADMIN_API_URL"
    )
    """Where the UI finds the admin API."""

    admin_api_timeout_s: float = Field(
        default=15.0, validation_alias="UI_ADMIN_API_TIMEOUT_S", gt=0
    )
    """Deadline of one admin API call (Refresh Live State asks the upstream, so it is generous)."""

    cookie_secure: bool = Field(default=False, validation_alias="UI_COOKIE_SECURE")
    """Mark the session cookie ``Secure``: turn on whenever the UI is served over HTTPS."""

    session_max_age_s: int = Field(default=12 * 3600, validation_alias="UI_SESSION_MAX_AGE_S", gt=0)
    """How long a sign-in lasts."""

    live_interval_ms: int = Field(default=2500, validation_alias="UI_LIVE_INTERVAL_MS", ge=500)
    """How often the pool page polls for a fresh activity table."""

    router_public_url: str = Field(
        default="http://127.0.0.1:8080", validation_alias="UI_ROUTER_PUBLIC_URL"
    )
    """The router's address as agents reach it: the base of the snippets shown with a new key."""

    @field_validator("admin_api_url", "router_public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")
