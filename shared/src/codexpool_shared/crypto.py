"""Secrets at rest: AES-256-GCM envelopes bound to the record and field they belong to.

An envelope is ``v1:<key id>:<base64url(nonce + ciphertext + tag)>``. The associated data names
the record and the field (for example provider ``acct-1``, field ``access_token``), so a
ciphertext copied into another record or field fails to decrypt instead of silently becoming
that record's secret.

Keys come from ``CODEXPOOL_SECRET_KEY``: one or more comma-separated base64 keys of 32 bytes.
The first encrypts; any of them decrypts, which is how a key is rotated without downtime:
prepend the new key, re-encrypt what ``needs_rotation`` reports, then drop the old key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from codexpool_shared.config import InfraSettings

ENVELOPE_VERSION = "v1"
"""The only envelope format written; decrypting any other version fails."""

KEY_BYTES = 32
"""Length of each configured key (AES-256)."""

SECRET_KEY_VARIABLE = "CODEXPOOL_SECRET_KEY"

_KEY_ID = re.compile(r"[0-9a-f]{8}")
_NONCE_BYTES = 12
_TAG_BYTES = 16
# Domain prefixes keep the key id, the AES key and every derived key independent of each other
# even though they all come from the same configured key.
_KEY_ID_DOMAIN = b"codexpool:key-id:v1:"
_AES_KEY_INFO = b"codexpool:aes-256-gcm:v1"
_DERIVE_INFO = b"codexpool:derive:v1:"


class DecryptionError(Exception):
    """An envelope could not be decrypted.

    Raised for a malformed envelope, an unknown version, a key id the keyring does not hold, a
    tampered ciphertext, or a ciphertext presented for another record or field. The message
    never contains key material or plaintext.
    """


def _hkdf(material: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(material)


def key_id(key: bytes) -> str:
    """The short, stable fingerprint that names ``key`` in the envelopes it encrypts.

    Args:
        key: A configured key (32 bytes).

    Returns:
        Eight hex digits of a domain-separated SHA-256 of the key.
    """
    return hashlib.sha256(_KEY_ID_DOMAIN + key).hexdigest()[:8]


def secret_digest(secret: str) -> str:
    """SHA-256 (hex) of a high-entropy bearer secret: how router keys and admin tokens are stored.

    The secrets are random (256 bits), so a plain hash is enough to store them: nothing short
    of the secret itself finds a match, and lookups stay one Redis GET.

    Args:
        secret: The plaintext key or token.

    Returns:
        64 hex digits.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def _associated_data(key_id: str, record: str, field: str) -> bytes:
    # Length-prefixed parts, so that ("ab", "c") and ("a", "bc") bind different data.
    out = bytearray()
    for part in (ENVELOPE_VERSION, key_id, record, field):
        raw = part.encode()
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _decode_key(text: str, position: int) -> bytes:
    normalized = text.replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    try:
        key = base64.b64decode(normalized, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"{SECRET_KEY_VARIABLE}: key #{position} is not valid base64 "
            f"(give one or more comma-separated base64 keys of {KEY_BYTES} bytes)"
        ) from None
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"{SECRET_KEY_VARIABLE}: key #{position} decodes to {len(key)} bytes, "
            f"need exactly {KEY_BYTES}"
        )
    return key


@dataclass(frozen=True, slots=True)
class _Key:
    key_id: str
    material: bytes
    aead: AESGCM


class Keyring:
    """The configured keys: the first encrypts, any decrypts.

    Build it once at startup with ``Keyring.from_settings(settings)``; a service that needs it
    then refuses to start when the key is missing or malformed.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        """Hold ``keys``, the first of which encrypts.

        Args:
            keys: Raw keys of 32 bytes each, newest first.

        Raises:
            ValueError: No key, a key of the wrong length, or the same key twice.
        """
        if not keys:
            raise ValueError(f"{SECRET_KEY_VARIABLE}: at least one key is required")
        entries: list[_Key] = []
        for position, material in enumerate(keys, start=1):
            if len(material) != KEY_BYTES:
                raise ValueError(
                    f"{SECRET_KEY_VARIABLE}: key #{position} is {len(material)} bytes, "
                    f"need exactly {KEY_BYTES}"
                )
            kid = key_id(material)
            if any(entry.key_id == kid for entry in entries):
                raise ValueError(f"{SECRET_KEY_VARIABLE}: key #{position} is listed twice")
            entries.append(_Key(kid, material, AESGCM(_hkdf(material, _AES_KEY_INFO))))
        self._keys = tuple(entries)
        self._by_id = {entry.key_id: entry for entry in entries}

    @classmethod
    def from_secret(cls, secret: SecretStr | str) -> Keyring:
        """Parse the value of ``CODEXPOOL_SECRET_KEY``.

        Args:
            secret: Comma-separated base64 (standard or URL-safe, padding optional) keys.

        Returns:
            The keyring.

        Raises:
            ValueError: The value is empty or a key is malformed; the message names the variable
                and the key's position, never its value.
        """
        text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        parts = [part.strip() for part in text.split(",")]
        keys = [_decode_key(part, position) for position, part in enumerate(parts, 1) if part]
        if not keys:
            raise ValueError(f"{SECRET_KEY_VARIABLE} is empty: give at least one key")
        return cls(keys)

    @classmethod
    def from_settings(cls, settings: InfraSettings) -> Keyring:
        """The keyring of ``settings.secret_key``.

        Parsing happens here rather than in a settings validator because pydantic's
        ``ValidationError`` would print the offending input, that is the key.

        Args:
            settings: Any service's settings.

        Returns:
            The keyring.

        Raises:
            ValueError: ``CODEXPOOL_SECRET_KEY`` is missing or malformed.
        """
        return cls.from_secret(settings.require_secret_key())

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the keys, the encrypting one first."""
        return tuple(entry.key_id for entry in self._keys)

    def encrypt(self, plaintext: str, *, record: str, field: str) -> str:
        """Encrypt ``plaintext`` with the first key, bound to ``record`` and ``field``.

        Args:
            plaintext: The secret.
            record: The record it belongs to, e.g. the provider name.
            field: The field it is stored in, e.g. ``"access_token"``.

        Returns:
            The envelope ``v1:<key id>:<base64url(nonce + ciphertext + tag)>``.
        """
        key = self._keys[0]
        nonce = os.urandom(_NONCE_BYTES)
        sealed = key.aead.encrypt(
            nonce, plaintext.encode(), _associated_data(key.key_id, record, field)
        )
        return f"{ENVELOPE_VERSION}:{key.key_id}:{_b64url(nonce + sealed)}"

    def decrypt(self, envelope: str, *, record: str, field: str) -> str:
        """Decrypt an envelope made by ``encrypt`` for the same ``record`` and ``field``.

        Args:
            envelope: The stored envelope.
            record: The record it is read from.
            field: The field it is read from.

        Returns:
            The plaintext.

        Raises:
            DecryptionError: Malformed, unknown version or key, tampered, or moved.
        """
        kid, body = self._parse(envelope)
        key = self._by_id.get(kid)
        if key is None:
            raise DecryptionError(
                f"envelope for {record}.{field} was encrypted with key {kid}, which "
                f"{SECRET_KEY_VARIABLE} does not hold (holds: {', '.join(self.key_ids)})"
            )
        try:
            raw = _unb64url(body)
        except (binascii.Error, ValueError):
            raise DecryptionError(f"envelope for {record}.{field} is not base64url") from None
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise DecryptionError(f"envelope for {record}.{field} is truncated")
        try:
            plaintext = key.aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _associated_data(kid, record, field)
            )
        except InvalidTag:
            raise DecryptionError(
                f"envelope for {record}.{field} does not authenticate: tampered, or it "
                "belongs to another record or field"
            ) from None
        return plaintext.decode()

    def needs_rotation(self, envelope: str) -> bool:
        """Whether ``envelope`` was encrypted under a key other than the first.

        Args:
            envelope: A stored envelope.

        Returns:
            True when it should be re-encrypted (see ``rotate``).

        Raises:
            DecryptionError: The envelope is malformed or of an unknown version.
        """
        kid, _ = self._parse(envelope)
        return kid != self._keys[0].key_id

    def rotate(self, envelope: str, *, record: str, field: str) -> str:
        """Re-encrypt ``envelope`` under the first key if it is under another one.

        Args:
            envelope: A stored envelope.
            record: The record it belongs to.
            field: The field it is stored in.

        Returns:
            ``envelope`` itself when it is current, else a new envelope under the first key.

        Raises:
            DecryptionError: As ``decrypt``.
        """
        if not self.needs_rotation(envelope):
            return envelope
        return self.encrypt(
            self.decrypt(envelope, record=record, field=field), record=record, field=field
        )

    def derive_key(self, purpose: str, *, length: int = KEY_BYTES) -> bytes:
        """A subkey of the first key for another purpose (HKDF-SHA256).

        For example the UI signs session cookies with ``derive_key("ui-session")``. The subkey
        changes when the first key does; verify with ``derived_keys`` to accept values signed
        before a rotation.

        Args:
            purpose: What the key is for; different purposes give independent keys.
            length: Bytes of key wanted.

        Returns:
            The derived key, the same for the same configured key and purpose.
        """
        return self.derived_keys(purpose, length=length)[0]

    def derived_keys(self, purpose: str, *, length: int = KEY_BYTES) -> tuple[bytes, ...]:
        """``derive_key(purpose)`` for every configured key, the current one first.

        Args:
            purpose: What the key is for.
            length: Bytes of key wanted.

        Returns:
            One derived key per configured key, in keyring order.

        Raises:
            ValueError: ``purpose`` is empty.
        """
        if not purpose:
            raise ValueError("derive_key needs a non-empty purpose")
        info = _DERIVE_INFO + purpose.encode()
        return tuple(_hkdf(entry.material, info, length) for entry in self._keys)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={list(self.key_ids)!r})"

    @staticmethod
    def _parse(envelope: str) -> tuple[str, str]:
        # Messages never echo the input: a plaintext secret passed by mistake must not leak.
        parts = envelope.split(":", 2)
        if len(parts) != 3:
            raise DecryptionError("not an envelope: expected '<version>:<key id>:<data>'")
        if parts[0] != ENVELOPE_VERSION:
            raise DecryptionError(f"unknown envelope version (this build reads {ENVELOPE_VERSION})")
        if not _KEY_ID.fullmatch(parts[1]):
            raise DecryptionError("not an envelope: malformed key id")
        return parts[1], parts[2]
