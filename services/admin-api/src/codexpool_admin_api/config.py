from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from codexpool_shared.config import InfraSettings


class Settings(InfraSettings):
    """codexpool-admin-api settings: the shared infrastructure plus ``ADMIN_*`` knobs."""

    model_config = SettingsConfigDict(
        extra="ignore", env_ignore_empty=True, frozen=True, populate_by_name=True
    )
