from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

from codexpool_shared.crypto import Keyring


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}.sig"


def auth_json(
    account_id: str, *, email: str = "a@example.com", plan: str = "plus", exp: int | None = None
) -> dict[str, Any]:
    auth = {"chatgpt_account_id": account_id, "chatgpt_plan_type": plan}
    exp = exp if exp is not None else int(time.time()) + 864000
    return {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": jwt({"email": email, "https://api.openai.com/auth": auth, "exp": exp}),
            "access_token": jwt({"https://api.openai.com/auth": auth, "exp": exp}),
            "refresh_token": "rt_" + os.urandom(8).hex(),
            "account_id": account_id,
        },
        "last_refresh": "2026-01-02T03:04:05.123456Z",
    }


def keyring() -> Keyring:
    return Keyring([os.urandom(32)])
