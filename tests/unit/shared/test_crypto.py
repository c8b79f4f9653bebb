from __future__ import annotations

import base64
import os

import pytest
from pydantic import SecretStr

from codexpool_shared.config import InfraSettings
from codexpool_shared.crypto import DecryptionError, Keyring, key_id


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.fixture
def old_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def new_key() -> bytes:
    return os.urandom(32)


def _settings(secret: str | None) -> InfraSettings:
    return InfraSettings.model_validate({"CODEXPOOL_SECRET_KEY": secret})


def test_round_trip_and_envelope_shape(old_key: bytes) -> None:
    ring = Keyring([old_key])
    envelope = ring.encrypt("tok-éà-secret", record="acct-1", field="access_token")

    version, kid, body = envelope.split(":", 2)
    assert (version, kid) == ("v1", key_id(old_key))
    assert "tok" not in envelope
    assert "=" not in body and "+" not in body and "/" not in body
    assert ring.decrypt(envelope, record="acct-1", field="access_token") == "tok-éà-secret"


def test_same_plaintext_encrypts_differently(old_key: bytes) -> None:
    ring = Keyring([old_key])
    first = ring.encrypt("x", record="r", field="f")
    assert first != ring.encrypt("x", record="r", field="f")


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampered_ciphertext_fails(old_key: bytes, position: int) -> None:
    ring = Keyring([old_key])
    envelope = ring.encrypt("secret", record="acct-1", field="access_token")
    prefix, body = envelope.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[position] ^= 0x01
    tampered = f"{prefix}:{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"

    with pytest.raises(DecryptionError, match="does not authenticate"):
        ring.decrypt(tampered, record="acct-1", field="access_token")


def test_wrong_key_fails(old_key: bytes, new_key: bytes) -> None:
    envelope = Keyring([old_key]).encrypt("secret", record="acct-1", field="access_token")
    with pytest.raises(DecryptionError, match="does not hold"):
        Keyring([new_key]).decrypt(envelope, record="acct-1", field="access_token")


def test_wrong_key_under_a_forged_key_id_fails(old_key: bytes, new_key: bytes) -> None:
    envelope = Keyring([old_key]).encrypt("secret", record="acct-1", field="access_token")
    forged = envelope.replace(key_id(old_key), key_id(new_key), 1)
    with pytest.raises(DecryptionError, match="does not authenticate"):
        Keyring([new_key]).decrypt(forged, record="acct-1", field="access_token")


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ("acct-2", "access_token"),
        ("acct-1", "refresh_token"),
        ("acct-", "1access_token"),
        ("", "acct-1access_token"),
    ],
)
def test_ciphertext_moved_to_another_record_or_field_fails(
    old_key: bytes, record: str, field: str
) -> None:
    ring = Keyring([old_key])
    envelope = ring.encrypt("secret", record="acct-1", field="access_token")
    with pytest.raises(DecryptionError, match="another record or field"):
        ring.decrypt(envelope, record=record, field=field)


@pytest.mark.parametrize(
    "envelope",
    [
        "",
        "plaintext-token",
        "v2:0123abcd:AAAA",
        "v1:not-hex!:AAAA",
        "v1:{kid}:%%%%",
        "v1:{kid}:AAAA",
    ],
)
def test_malformed_or_unknown_envelopes_fail(old_key: bytes, envelope: str) -> None:
    ring = Keyring([old_key])
    with pytest.raises(DecryptionError):
        ring.decrypt(envelope.format(kid=key_id(old_key)), record="r", field="f")


def test_errors_never_echo_the_input(old_key: bytes) -> None:
    ring = Keyring([old_key])
    with pytest.raises(DecryptionError) as excinfo:
        ring.decrypt("sk-canary-plaintext:zz:yy", record="r", field="f")
    assert "canary" not in str(excinfo.value)


def test_rotation(old_key: bytes, new_key: bytes) -> None:
    old_ring = Keyring([old_key])
    envelope = old_ring.encrypt("secret", record="acct-1", field="refresh_token")
    assert not old_ring.needs_rotation(envelope)

    rotated_ring = Keyring([new_key, old_key])
    assert rotated_ring.key_ids == (key_id(new_key), key_id(old_key))
    assert rotated_ring.needs_rotation(envelope)
    assert rotated_ring.decrypt(envelope, record="acct-1", field="refresh_token") == "secret"

    fresh = rotated_ring.encrypt("secret", record="acct-1", field="refresh_token")
    assert fresh.split(":")[1] == key_id(new_key)
    assert not rotated_ring.needs_rotation(fresh)

    rewrapped = rotated_ring.rotate(envelope, record="acct-1", field="refresh_token")
    assert rewrapped.split(":")[1] == key_id(new_key)
    assert rotated_ring.rotate(rewrapped, record="acct-1", field="refresh_token") == rewrapped

    new_only = Keyring([new_key])
    assert new_only.decrypt(rewrapped, record="acct-1", field="refresh_token") == "secret"
    with pytest.raises(DecryptionError):
        new_only.decrypt(envelope, record="acct-1", field="refresh_token")


def test_from_settings_parses_a_comma_separated_list(old_key: bytes, new_key: bytes) -> None:
    urlsafe_unpadded = base64.urlsafe_b64encode(old_key).rstrip(b"=").decode()
    ring = Keyring.from_settings(_settings(f" {_b64(new_key)} ,{urlsafe_unpadded},"))
    assert ring.key_ids == (key_id(new_key), key_id(old_key))


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "CODEXPOOL_SECRET_KEY is not set"),
        ("   ", "CODEXPOOL_SECRET_KEY is not set"),
        (",", "CODEXPOOL_SECRET_KEY is empty"),
        ("{good},not*base64*canary", "key #2 is not valid base64"),
        ("c2hvcnQtY2FuYXJ5LWtleQ==", "key #1 decodes to 16 bytes"),
        ("{good},{good}", "key #2 is listed twice"),
    ],
)
def test_bad_key_config_is_a_clear_error_without_the_key(
    old_key: bytes, secret: str | None, message: str
) -> None:
    good = _b64(old_key)
    value = None if secret is None else secret.format(good=good)
    with pytest.raises(ValueError, match=message) as excinfo:
        Keyring.from_settings(_settings(value))
    text = str(excinfo.value)
    assert "CODEXPOOL_SECRET_KEY" in text
    assert good not in text
    assert "canary" not in text and "c2hvcnQ" not in text
    assert excinfo.value.__cause__ is None


def test_repr_names_key_ids_only(old_key: bytes) -> None:
    ring = Keyring.from_secret(SecretStr(_b64(old_key)))
    assert repr(ring) == f"Keyring(key_ids=['{key_id(old_key)}'])"
    assert _b64(old_key) not in repr(ring)


def test_derive_key_is_stable_and_purpose_separated(old_key: bytes, new_key: bytes) -> None:
    ring = Keyring([old_key])
    cookie = ring.derive_key("ui-session")
    assert len(cookie) == 32
    assert cookie == Keyring([old_key]).derive_key("ui-session")
    assert cookie != ring.derive_key("csrf")
    assert cookie != old_key
    assert cookie != Keyring([new_key]).derive_key("ui-session")
    assert len(ring.derive_key("ui-session", length=64)) == 64

    rotated = Keyring([new_key, old_key])
    assert rotated.derived_keys("ui-session") == (
        Keyring([new_key]).derive_key("ui-session"),
        cookie,
    )
    with pytest.raises(ValueError, match="purpose"):
        ring.derive_key("")
