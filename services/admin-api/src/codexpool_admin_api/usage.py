"""Reading a provider's quota from the upstream usage endpoint.

The endpoint and its document: docs/reference/codex-backend-protocol.md section 6.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx

from codexpool_shared.store.live import QuotaSnapshot, QuotaWindow


class UsageError(Exception):
    """The usage endpoint could not be read; the message is safe to show (no token in it)."""


class TokenRejected(UsageError):
    """The usage endpoint answered 401: the access token is expired or revoked."""


def _window(raw: object) -> QuotaWindow | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("used_percent"), int | float):
        return None
    seconds = raw.get("limit_window_seconds")
    resets_at = raw.get("reset_at")
    return QuotaWindow(
        used_percent=float(raw["used_percent"]),
        # Codex converts the window to minutes rounding up; so do we, to show the same figure.
        window_minutes=math.ceil(seconds / 60) if isinstance(seconds, int | float) else None,
        resets_at=int(resets_at) if isinstance(resets_at, int | float) else None,
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_usage(doc: dict[str, Any], *, observed_at_ms: int) -> QuotaSnapshot:
    limits, credits = _object(doc.get("rate_limit")), _object(doc.get("credits"))
    plan = doc.get("plan_type")
    balance = credits.get("balance")
    has_credits, unlimited = credits.get("has_credits"), credits.get("unlimited")
    return QuotaSnapshot(
        primary=_window(limits.get("primary_window")),
        secondary=_window(limits.get("secondary_window")),
        plan_type=plan if isinstance(plan, str) else None,
        credits_has_credits=has_credits if isinstance(has_credits, bool) else None,
        credits_unlimited=unlimited if isinstance(unlimited, bool) else None,
        credits_balance=str(balance) if isinstance(balance, str | int | float) else None,
        observed_at_ms=observed_at_ms,
    )


async def fetch_usage(
    http: httpx.AsyncClient, base_url: str, access_token: str, account_id: str
) -> QuotaSnapshot:
    headers = {
        "Authorization": f"Bearer {access_token}",
        "ChatGPT-Account-Id": account_id,
        "User-Agent": "codexpool-admin-api",
    }
    try:
        response = await http.get(f"{base_url.rstrip('/')}/wham/usage", headers=headers)
    except httpx.HTTPError as exc:
        raise UsageError(f"usage endpoint unreachable ({type(exc).__name__})") from None
    # Observed when the answer arrived, as the router stamps the x-codex-* headers it reads.
    observed_at_ms = time.time_ns() // 1_000_000
    if response.status_code == 401:
        raise TokenRejected("usage endpoint refused the token (401)")
    if response.status_code == 403:
        raise UsageError(f"usage endpoint refused the token ({response.status_code})")
    if response.status_code != 200:
        raise UsageError(f"usage endpoint answered {response.status_code}")
    try:
        doc = response.json()
    except ValueError:
        raise UsageError("usage endpoint answered malformed JSON") from None
    if not isinstance(doc, dict):
        raise UsageError("usage endpoint answered malformed JSON")
    return parse_usage(doc, observed_at_ms=observed_at_ms)
