"""The session cookie: signed, time-limited, and never carrying the bearer token in clear.

The cookie holds a CSRF token and, once signed in, the user's admin API token encrypted with the
shared keyring (record ``ui-session``) plus the name and role the admin API reported. It is
signed with an HKDF subkey of ``CODEXPOOL_SECRET_KEY``, so the UI needs no secret of its own and
any UI replica can read any cookie. The role in it only decides what the page shows; the admin
API enforces every permission itself.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from codexpool_shared.crypto import DecryptionError, Keyring

COOKIE_NAME = "codexpool_session"
CSRF_FIELD = "csrf_token"
_RECORD = "ui-session"
_PURPOSE = "ui-session"


@dataclass(frozen=True, slots=True)
class Session:
    """One browser's session; ``token`` is None until it signs in."""

    csrf: str
    token: str | None = None
    name: str | None = None
    role: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.token is not None

    @property
    def bearer(self) -> str:
        """The admin API token; only called behind the signed-in dependencies."""
        if self.token is None:
            raise RuntimeError("this session is not signed in")
        return self.token

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)


def new_session() -> Session:
    return Session(csrf=secrets.token_urlsafe(32))


class SessionCodec:
    """Turns a ``Session`` into a cookie value and back."""

    def __init__(self, keyring: Keyring, max_age_s: int) -> None:
        self._keyring = keyring
        self._max_age_s = max_age_s
        # itsdangerous signs with the last key and accepts any: the current derived key goes
        # last so that cookies signed before a key rotation stay valid.
        signing_keys = list(reversed(keyring.derived_keys(_PURPOSE)))
        self._serializer = URLSafeTimedSerializer(signing_keys, salt="codexpool-ui-session")

    @property
    def max_age_s(self) -> int:
        return self._max_age_s

    def dumps(self, session: Session) -> str:
        payload: dict[str, Any] = {"csrf": session.csrf}
        if session.token is not None:
            payload["tok"] = self._keyring.encrypt(session.token, record=_RECORD, field="token")
            payload["name"] = session.name
            payload["role"] = session.role
        return self._serializer.dumps(payload)

    def loads(self, value: str | None) -> Session | None:
        """The session in a cookie; None when it is absent, forged, expired or unreadable."""
        if not value:
            return None
        try:
            payload = self._serializer.loads(value, max_age=self._max_age_s)
        except BadSignature:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("csrf"), str):
            return None
        envelope = payload.get("tok")
        if not isinstance(envelope, str):
            return Session(csrf=payload["csrf"])
        try:
            token = self._keyring.decrypt(envelope, record=_RECORD, field="token")
        except DecryptionError:
            return None
        return Session(
            csrf=payload["csrf"],
            token=token,
            name=str(payload.get("name") or ""),
            role=str(payload.get("role") or ""),
        )
