"""One sim instance's state: accounts, issuer, recorder and knobs, shared by every route."""

from __future__ import annotations

import itertools
import random
import secrets
from dataclasses import replace

from codexpool_sim.accounts import Account, Style, new_identity
from codexpool_sim.clock import Clock
from codexpool_sim.config import SimConfig
from codexpool_sim.device import POLL_INTERVAL_S, DeviceCodes
from codexpool_sim.quota import Quota
from codexpool_sim.recording import Recorder
from codexpool_sim.tokens import TokenSet, TokenStore
from codexpool_sim.transcript import TranscriptCache


class Sim:
    def __init__(self, config: SimConfig) -> None:
        if config.accounts < 0 or not config.plans:
            raise ValueError("a sim needs a non-negative account count and at least one plan")
        self.config = config
        self.clock = Clock(config.start_time, frozen=config.frozen_clock)
        self.rng = random.Random(config.seed)
        self.validation = replace(config.validation)
        self.mismatch = config.account_id_mismatch
        self.workspace_backend_origin = config.workspace_backend_origin
        self.tokens = TokenStore(config.access_ttl_s, config.id_ttl_s)
        self.tokens.reuse_revokes_family = config.reuse_revokes_family
        self.recorder = Recorder(config.record_limit)
        self.transcripts = TranscriptCache()
        self.devices = DeviceCodes()
        self.device_interval_s = POLL_INTERVAL_S
        self.accounts: dict[str, Account] = {}
        self._rid_prefix = secrets.token_hex(4)
        self._rids = itertools.count(1)
        for i in range(config.accounts):
            self.add_account(config.plans[i % len(config.plans)])

    def add_account(self, plan_type: str) -> Account:
        now = self.clock.now()
        index = len(self.accounts) + 1
        who = new_identity(self.rng, index, plan_type)
        cfg = self.config
        account = Account(
            index=index,
            account_id=who.account_id,
            user_id=who.user_id,
            email=who.email,
            plan_type=plan_type,
            quota=Quota.for_plan(
                plan_type, now, cfg.primary_cost_percent, cfg.secondary_cost_percent
            ),
            tokens=self.tokens.issue(who, now),
            last_refresh=now,
            style=Style(cfg.response_text),
            ttfb_ms=cfg.ttfb_ms,
            event_delay_ms=cfg.event_delay_ms,
        )
        self.accounts[account.account_id] = account
        return account

    def issue_tokens(self, account: Account) -> TokenSet:
        now = self.clock.now()
        account.tokens = self.tokens.issue(account.identity, now)
        account.last_refresh = now
        return account.tokens

    def authenticate(self, authorization: bytes | None) -> tuple[Account | None, str | None]:
        """The account a bearer token belongs to, and the 401 code when it is not usable."""
        if authorization is None or not authorization[:7].lower() == b"bearer ":
            return None, "token_invalidated"
        record = self.tokens.access(authorization[7:].strip().decode("latin-1"))
        if record is None:
            return None, "token_invalidated"
        account = self.accounts.get(record.account_id)
        if record.revoked or account is None:
            return account, "token_invalidated"
        if record.expires_at <= self.clock.now():
            return account, "token_expired"
        return account, None

    def next_response_id(self) -> bytes:
        return f"resp_{self._rid_prefix}{next(self._rids):08x}".encode()
