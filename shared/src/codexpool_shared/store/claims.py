"""Unverified JWT claims of Codex OAuth tokens (docs/reference/codex-backend-protocol.md 1.2).

Codex itself never verifies these signatures; the issuer is trusted through the TLS channel
the tokens arrived on. We only read the claims that identify the account.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"


def jwt_payload(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, or ``None`` when ``token`` is not a readable JWT.

    Args:
        token: A compact JWT (``header.payload.signature``) or an opaque token.

    Returns:
        The decoded payload object, or ``None``.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(segment))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


@dataclass(frozen=True, slots=True)
class AccountClaims:
    """What identifies a ChatGPT account, read from its id_token and access token."""

    account_id: str | None
    email: str | None
    plan_type: str | None
    access_expires_at: int | None


def _auth(payload: dict[str, Any] | None) -> dict[str, Any]:
    claim = (payload or {}).get(AUTH_CLAIM)
    return claim if isinstance(claim, dict) else {}


def account_claims(id_token: str | None, access_token: str | None) -> AccountClaims:
    """Account id, email, plan (id_token first, then the access token) and the access expiry.

    Args:
        id_token: The id_token JWT, if any.
        access_token: The access token (a JWT for ChatGPT accounts).

    Returns:
        The claims found; missing ones are ``None``.
    """
    id_payload = jwt_payload(id_token) if id_token else None
    access_payload = jwt_payload(access_token) if access_token else None
    id_auth, access_auth = _auth(id_payload), _auth(access_payload)
    email = (id_payload or {}).get("email")
    if not isinstance(email, str):
        profile = (id_payload or {}).get(PROFILE_CLAIM)
        email = profile.get("email") if isinstance(profile, dict) else None
    account_id = id_auth.get("chatgpt_account_id") or access_auth.get("chatgpt_account_id")
    plan = id_auth.get("chatgpt_plan_type") or access_auth.get("chatgpt_plan_type")
    exp = (access_payload or {}).get("exp")
    return AccountClaims(
        account_id=account_id if isinstance(account_id, str) else None,
        email=email if isinstance(email, str) else None,
        plan_type=plan if isinstance(plan, str) else None,
        access_expires_at=int(exp) if isinstance(exp, int | float) else None,
    )
