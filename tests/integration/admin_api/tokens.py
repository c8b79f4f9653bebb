"""Codex-shaped credentials for tests: unsigned JWTs carrying the claims the store reads."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any


def _segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def jwt(claims: dict[str, Any]) -> str:
    return f"{_segment({'alg': 'none'})}.{_segment(claims)}.sig"


def auth_json(account: str, *, plan: str = "plus", expires_in: int = 3600) -> dict[str, Any]:
    """A Codex auth.json document for ``account``; its tokens are unique canaries."""
    auth = {"chatgpt_account_id": f"acc-{account}", "chatgpt_plan_type": plan}
    exp = int(time.time()) + expires_in
    return {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": jwt(
                {"email": f"{account}@example.com", "https://api.openai.com/auth": auth, "exp": exp}
            ),
            "access_token": jwt(
                {"https://api.openai.com/auth": auth, "exp": exp, "canary": secrets.token_hex(16)}
            ),
            "refresh_token": "rt_canary_" + secrets.token_hex(16),
            "account_id": f"acc-{account}",
        },
        "last_refresh": "2026-01-02T03:04:05.123456Z",
    }
