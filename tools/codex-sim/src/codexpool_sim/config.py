"""What a sim instance is built from; every field also has a command-line flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class MismatchPolicy(StrEnum):
    """What to do when ``chatgpt-account-id`` names another account than the token's."""

    REJECT_401 = "reject_401"
    REJECT_403 = "reject_403"
    IGNORE = "ignore"


@dataclass
class Validation:
    """Request checks of the Codex route; the defaults accept what Codex CLI 0.169 sends."""

    require_store_false: bool = True
    require_instructions: bool = False
    require_stream: bool = False
    reject_max_output_tokens: bool = True
    check_model: bool = False


@dataclass(frozen=True)
class SimConfig:
    """A sim instance: its accounts and the defaults every account starts with."""

    accounts: int = 3
    plans: tuple[str, ...] = ("plus",)
    seed: int | None = None
    start_time: float | None = None
    frozen_clock: bool = False
    access_ttl_s: int = 10 * 24 * 3600
    id_ttl_s: int = 3600
    primary_cost_percent: float = 0.5
    secondary_cost_percent: float = 0.05
    ttfb_ms: int = 0
    event_delay_ms: int = 0
    response_text: str = "Hello world"
    record_limit: int = 1000
    validation: Validation = field(default_factory=Validation)
    account_id_mismatch: MismatchPolicy = MismatchPolicy.REJECT_403
    reuse_revokes_family: bool = True
    workspace_backend_origin: str | None = None


class SeedSettings(BaseSettings):
    """Where ``codexpool-sim-seed`` finds the admin API, and the admin token it calls it with."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    admin_api_url: str = Field(
        default="http://127.0.0.1:8081", validation_alias="CODEXPOOL_ADMIN_API_URL"
    )
    admin_token: SecretStr = Field(validation_alias="CODEXPOOL_ADMIN_TOKEN")
