"""Reading a provider's quota from the upstream usage endpoint.

The endpoint and its document: docs/reference/codex-backend-protocol.md section 6.
"""

from __future__ import annotations

import time

import httpx

from codexpool_shared.store.live import QuotaSnapshot
from codexpool_shared.usage import parse_usage


class UsageError(Exception):
    """The usage endpoint could not be read; the message is safe to show (no token in it)."""


class TokenRejected(UsageError):
    """The usage endpoint answered 401: the access token is expired or revoked."""


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
