"""Device-code login state (reference §2.1): codes wait until an admin approves them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

DEVICE_CODE_TTL_S = 900
AUTH_CODE_TTL_S = 600
POLL_INTERVAL_S = 5
# The issuer's own callback (https://auth.openai.com/deviceauth/callback upstream); the sim
# accepts it under whatever origin clients know the issuer by.
DEVICE_CALLBACK_PATH = "/deviceauth/callback"


@dataclass
class DeviceCode:
    device_auth_id: str
    user_code: str
    expires_at: float
    account_id: str | None = None
    redeemed: bool = False

    def view(self, now: float) -> dict[str, Any]:
        return {
            "device_auth_id": self.device_auth_id,
            "user_code": self.user_code,
            "expires_at": int(self.expires_at),
            "expired": now >= self.expires_at,
            "approved_account_id": self.account_id,
            "redeemed": self.redeemed,
        }


@dataclass
class AuthCode:
    account_id: str
    code_verifier: str
    expires_at: float
    used: bool = False


def _user_code() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    chars = [secrets.choice(alphabet) for _ in range(8)]
    return "".join(chars[:4]) + "-" + "".join(chars[4:])


class DeviceCodes:
    def __init__(self) -> None:
        self.by_id: dict[str, DeviceCode] = {}
        self.auth_codes: dict[str, AuthCode] = {}

    def start(self, now: float) -> DeviceCode:
        code = DeviceCode(
            "deviceauth_" + secrets.token_hex(12), _user_code(), now + DEVICE_CODE_TTL_S
        )
        self.by_id[code.device_auth_id] = code
        return code

    def by_user_code(self, user_code: str) -> DeviceCode | None:
        return next((c for c in self.by_id.values() if c.user_code == user_code), None)

    def grant(self, device: DeviceCode, now: float) -> tuple[str, str]:
        """Turn an approved device code into a one-time authorization code and its verifier."""
        assert device.account_id is not None
        device.redeemed = True
        code = "ac_" + secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        self.auth_codes[code] = AuthCode(device.account_id, verifier, now + AUTH_CODE_TTL_S)
        return code, verifier
