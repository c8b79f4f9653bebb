from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from codexpool_shared.config import InfraSettings


class Settings(InfraSettings):
    """codexpool-health settings: the shared infrastructure plus ``HEALTH_*`` knobs."""

    model_config = SettingsConfigDict(
        extra="ignore", env_ignore_empty=True, frozen=True, populate_by_name=True
    )
