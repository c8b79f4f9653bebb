"""Unsigned JWTs with the claims Codex reads, and the issuer's token bookkeeping.

Refresh tokens are single-use: redeeming one rotates it, and presenting a rotated one again is
``refresh_token_reused`` (optionally killing the whole grant, as the real issuer can).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
ISSUER = "https://auth.openai.com"
AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_jwt(claims: dict[str, Any]) -> str:
    """An ``alg: none`` JWT, as Codex's own tests write them: Codex never checks signatures."""
    header = _b64(orjson.dumps({"alg": "none", "typ": "JWT"}))
    return f"{header}.{_b64(orjson.dumps(claims))}.{_b64(b'codex-sim')}"


def decode_jwt(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = orjson.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


@dataclass(frozen=True)
class Identity:
    """Who a token speaks for."""

    account_id: str
    user_id: str
    email: str
    plan_type: str


def _auth_claims(who: Identity) -> dict[str, str]:
    return {
        "chatgpt_account_id": who.account_id,
        "chatgpt_plan_type": who.plan_type,
        "chatgpt_user_id": who.user_id,
        "user_id": who.user_id,
    }


def id_token_claims(who: Identity, now: float, ttl_s: int) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": [CLIENT_ID],
        "sub": who.user_id,
        "email": who.email,
        "email_verified": True,
        PROFILE_CLAIM: {"email": who.email},
        AUTH_CLAIM: _auth_claims(who),
        "iat": int(now),
        "exp": int(now) + ttl_s,
    }


def access_token_claims(who: Identity, now: float, ttl_s: int) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": ["https://api.openai.com/v1"],
        "client_id": CLIENT_ID,
        "sub": who.user_id,
        "jti": secrets.token_hex(8),
        "scp": ["openid", "profile", "email", "offline_access"],
        PROFILE_CLAIM: {"email": who.email},
        AUTH_CLAIM: _auth_claims(who),
        "iat": int(now),
        "exp": int(now) + ttl_s,
    }


class RefreshState(StrEnum):
    LIVE = "live"
    ROTATED = "rotated"
    EXPIRED = "expired"
    INVALIDATED = "invalidated"


@dataclass
class AccessRecord:
    account_id: str
    expires_at: float
    revoked: bool = False


@dataclass
class RefreshRecord:
    """One refresh token; ``uses`` counts every time a client presented it."""

    account_id: str
    version: int
    state: RefreshState = RefreshState.LIVE
    uses: int = 0

    def view(self) -> dict[str, Any]:
        return {"version": self.version, "state": self.state.value, "uses": self.uses}


@dataclass(frozen=True)
class TokenSet:
    id_token: str
    access_token: str
    refresh_token: str
    access_expires_at: float


@dataclass
class RefreshStats:
    refreshes: int = 0
    reused: int = 0
    rejected: int = 0
    tokens: list[RefreshRecord] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {
            "refreshes": self.refreshes,
            "reused": self.reused,
            "rejected": self.rejected,
            "tokens": [t.view() for t in self.tokens],
        }


class RefreshError(Exception):
    """A refused refresh; ``code`` is what the issuer answers."""

    def __init__(self, code: str, account_id: str | None) -> None:
        super().__init__(code)
        self.code = code
        self.account_id = account_id


class TokenStore:
    """Every token the issuer minted, by value."""

    def __init__(self, access_ttl_s: int, id_ttl_s: int) -> None:
        self.access_ttl_s = access_ttl_s
        self.id_ttl_s = id_ttl_s
        self.reuse_revokes_family = True
        self._access: dict[str, AccessRecord] = {}
        self._refresh: dict[str, RefreshRecord] = {}
        self.stats: dict[str, RefreshStats] = {}

    def issue(self, who: Identity, now: float) -> TokenSet:
        stats = self.stats.setdefault(who.account_id, RefreshStats())
        access = mint_jwt(access_token_claims(who, now, self.access_ttl_s))
        expires_at = now + self.access_ttl_s
        self._access[access] = AccessRecord(who.account_id, expires_at)
        refresh = "rt_" + secrets.token_urlsafe(32)
        record = RefreshRecord(who.account_id, version=len(stats.tokens) + 1)
        self._refresh[refresh] = record
        stats.tokens.append(record)
        id_token = mint_jwt(id_token_claims(who, now, self.id_ttl_s))
        return TokenSet(id_token, access, refresh, expires_at)

    def access(self, token: str) -> AccessRecord | None:
        return self._access.get(token)

    def refresh_record(self, token: str) -> RefreshRecord | None:
        return self._refresh.get(token)

    def redeem(self, refresh_token: str) -> RefreshRecord:
        """Consume a live refresh token (the caller then issues the next set) or refuse it."""
        record = self._refresh.get(refresh_token)
        if record is None:
            raise RefreshError("refresh_token_invalidated", None)
        record.uses += 1
        stats = self.stats[record.account_id]
        if record.state is RefreshState.LIVE:
            record.state = RefreshState.ROTATED
            stats.refreshes += 1
            return record
        stats.rejected += 1
        if record.state is RefreshState.ROTATED:
            stats.reused += 1
            if self.reuse_revokes_family:
                self.invalidate_account(record.account_id)
            raise RefreshError("refresh_token_reused", record.account_id)
        if record.state is RefreshState.EXPIRED:
            raise RefreshError("refresh_token_expired", record.account_id)
        raise RefreshError("refresh_token_invalidated", record.account_id)

    def set_refresh_state(self, refresh_token: str, state: RefreshState) -> None:
        record = self._refresh.get(refresh_token)
        if record is not None and record.state is RefreshState.LIVE:
            record.state = state

    def invalidate_account(self, account_id: str) -> None:
        """A reused refresh token revokes the grant: its live refresh and access tokens die."""
        for record in self.stats[account_id].tokens:
            if record.state is RefreshState.LIVE:
                record.state = RefreshState.INVALIDATED
        for access in self._access.values():
            if access.account_id == account_id:
                access.revoked = True

    def expire_access(self, account_id: str, now: float) -> None:
        for access in self._access.values():
            if access.account_id == account_id:
                access.expires_at = min(access.expires_at, now)

    def revoke(self, token: str) -> bool:
        if (access := self._access.get(token)) is not None:
            access.revoked = True
            return True
        if (record := self._refresh.get(token)) is not None:
            if record.state is RefreshState.LIVE:
                record.state = RefreshState.INVALIDATED
            return True
        return False
