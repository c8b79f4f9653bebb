"""ChatGPT accounts: identity, current tokens, quota, latency, transcript style and faults."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codexpool_sim.faults import FaultQueue
from codexpool_sim.quota import Quota
from codexpool_sim.tokens import Identity, TokenSet
from codexpool_sim.transcript import Shape, Usage

PAID_MODELS = (
    "gpt-5-codex",
    "gpt-5.1-codex",
    "gpt-5.1-codex-max",
    "gpt-5.2-codex",
    "gpt-5",
    "gpt-5.1",
    "gpt-5.2",
)
FREE_MODELS = ("gpt-5-codex", "gpt-5.1-codex-mini")


def models_for_plan(plan_type: str) -> tuple[str, ...]:
    return FREE_MODELS if plan_type == "free" else PAID_MODELS


@dataclass
class Style:
    """What a successful answer of this account looks like."""

    response_text: str
    reasoning: bool = True
    function_call: bool = False
    # The Codex backend quirk (§4.2): streamed items, then an empty ``output`` in completed.
    codex_empty_output: bool = True
    usage: Usage = field(default_factory=Usage)

    def shape(
        self, model: str, *, full_output: bool, incomplete_reason: str | None = None
    ) -> Shape:
        return Shape(
            model,
            self.response_text,
            self.reasoning,
            self.function_call,
            full_output,
            self.usage,
            incomplete_reason,
        )


@dataclass
class Account:
    index: int
    account_id: str
    user_id: str
    email: str
    plan_type: str
    quota: Quota
    tokens: TokenSet
    last_refresh: float
    style: Style
    ttfb_ms: int = 0
    event_delay_ms: int = 0
    omit_id_token: bool = False
    allowed_models: tuple[str, ...] = ()
    faults: FaultQueue = field(default_factory=FaultQueue)
    requests: int = 0

    @property
    def name(self) -> str:
        return f"account-{self.index}"

    @property
    def identity(self) -> Identity:
        return Identity(self.account_id, self.user_id, self.email, self.plan_type)

    def auth_json(self) -> dict[str, Any]:
        """The Codex ``auth.json`` a user would import for this account (reference §1.1)."""
        stamp = datetime.fromtimestamp(self.last_refresh, UTC).isoformat().replace("+00:00", "Z")
        return {
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": None,
            "tokens": {
                "id_token": self.tokens.id_token,
                "access_token": self.tokens.access_token,
                "refresh_token": self.tokens.refresh_token,
                "account_id": self.account_id,
            },
            "last_refresh": stamp,
        }


def new_identity(rng: random.Random, index: int, plan_type: str) -> Identity:
    account_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    user_id = "user-" + uuid.UUID(int=rng.getrandbits(128), version=4).hex[:24]
    return Identity(account_id, user_id, f"sim-account-{index}@example.com", plan_type)


def write_auth_files(accounts: list[Account], directory: Path) -> list[Path]:
    """``account-<n>.auth.json`` per account, plus ``accounts.json`` naming them all."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    summary: list[dict[str, Any]] = []
    for account in accounts:
        path = directory / f"{account.name}.auth.json"
        path.write_text(json.dumps(account.auth_json(), indent=2) + "\n")
        path.chmod(0o600)
        paths.append(path)
        summary.append(
            {
                "name": account.name,
                "account_id": account.account_id,
                "email": account.email,
                "plan_type": account.plan_type,
                "auth_file": path.name,
            }
        )
    (directory / "accounts.json").write_text(json.dumps({"accounts": summary}, indent=2) + "\n")
    return paths
