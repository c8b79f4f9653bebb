"""UI sessions: a signed cookie that names a session kept in Redis.

The cookie carries the form's CSRF token and, once signed in, a random session id: never the
admin API token. The session itself (the token, encrypted, and the name and role the admin API
reported) lives in Redis (``codexpool_shared.store.ui_sessions``) with the sign-in's lifetime
as its TTL. Signing out, or the admin API refusing the token (revoked), deletes it, which ends
the session at once on every UI replica: a replayed cookie finds nothing. The cookie is signed
with an HKDF subkey of ``CODEXPOOL_SECRET_KEY``, so the UI needs no secret of its own. The role
only decides what the page shows; the admin API enforces every permission itself.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, replace
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from codexpool_shared.crypto import Keyring
from codexpool_shared.store.ui_sessions import UiSession, UiSessionStore

COOKIE_NAME = "codexpool_session"
CSRF_FIELD = "csrf_token"
_PURPOSE = "ui-session"


@dataclass(frozen=True, slots=True)
class Session:
    """One browser's session; ``token`` is None until it signs in."""

    csrf: str
    token: str | None = None
    name: str | None = None
    role: str | None = None
    sid: str | None = None
    """The server-side session's id, once signed in."""

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


class Sessions:
    """Cookie values and the server-side sessions they name."""

    def __init__(self, store: UiSessionStore, keyring: Keyring, max_age_s: int) -> None:
        self.store = store
        self._max_age_s = max_age_s
        # itsdangerous signs with the last key and accepts any: the current derived key goes
        # last so that cookies signed before a key rotation stay valid.
        signing_keys = list(reversed(keyring.derived_keys(_PURPOSE)))
        self._serializer = URLSafeTimedSerializer(signing_keys, salt="codexpool-ui-session")

    @property
    def max_age_s(self) -> int:
        return self._max_age_s

    def cookie(self, session: Session) -> str:
        payload: dict[str, Any] = {"csrf": session.csrf}
        if session.sid is not None:
            payload["sid"] = session.sid
        return self._serializer.dumps(payload)

    async def sign_in(self, token: str, name: str, role: str) -> Session:
        """A new signed-in session, stored; a fresh CSRF token too, so that one planted before
        it (session fixation) is useless."""
        sid = secrets.token_urlsafe(32)
        await self.store.save(
            sid, UiSession(token=token, name=name, role=role), ttl_s=self._max_age_s
        )
        return replace(new_session(), token=token, name=name, role=role, sid=sid)

    async def end(self, session: Session) -> None:
        """Sign out: the session is gone for every UI replica."""
        if session.sid is not None:
            await self.store.end(session.sid)

    async def load(self, value: str | None) -> Session | None:
        """The session a cookie names; None when the cookie is absent, forged or expired.

        A cookie whose server-side session ended is a signed-out session (its CSRF token stays).
        """
        if not value:
            return None
        try:
            payload = self._serializer.loads(value, max_age=self._max_age_s)
        except BadSignature:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("csrf"), str):
            return None
        anonymous = Session(csrf=payload["csrf"])
        sid = payload.get("sid")
        if not isinstance(sid, str):
            return anonymous
        stored = await self.store.load(sid)
        if stored is None:
            return anonymous
        return Session(
            csrf=payload["csrf"], token=stored.token, name=stored.name, role=stored.role, sid=sid
        )
