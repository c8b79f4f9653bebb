from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest

from codexpool_admin_api.audit import scrub
from codexpool_admin_api.backup import (
    ConfigExport,
    ExportedAgent,
    ExportedProvider,
    validate_export,
)
from codexpool_shared.crypto import Keyring
from codexpool_shared.store.errors import InvalidField


def test_scrub_redacts_secret_looking_keys_at_any_depth() -> None:
    value = {
        "name": "acct-1",
        "access_token": "eyJ",
        "nested": [{"refresh_token": "rt", "status": "active"}],
        "Authorization": "Bearer x",
        "api_key": "cpk_",
    }
    assert scrub(value) == {
        "name": "acct-1",
        "access_token": "[redacted]",
        "nested": [{"refresh_token": "[redacted]", "status": "active"}],
        "Authorization": "[redacted]",
        "api_key": "[redacted]",
    }


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([os.urandom(32)])


def _provider(keyring: Keyring, name: str) -> ExportedProvider:
    record = {"name": name, "status": "active", "account_id": f"acc-{name}"}
    for field in ("access_token", "refresh_token", "id_token"):
        record[field] = keyring.encrypt(f"{field}-of-{name}", record=name, field=field)
    return ExportedProvider(name=name, record=record)


def _doc(keyring: Keyring) -> ConfigExport:
    agent = ExportedAgent(
        id="my-agent",
        record={"id": "my-agent", "name": "My agent", "created_at": "1700000000"},
        key_digests={
            "ab" * 32: '{"key_id": "abababababab", "prefix": "cpk_abcd", "created_at": 1}'
        },
        pool={"strategy": "round-robin", "providers": '["a", "b"]', "version": "4"},
    )
    return ConfigExport(
        exported_at=datetime.now(UTC),
        providers=[_provider(keyring, "a"), _provider(keyring, "b")],
        agents=[agent],
    )


def test_a_sound_export_validates(keyring: Keyring) -> None:
    validate_export(_doc(keyring), keyring)


def test_envelopes_must_decrypt_for_their_own_provider(keyring: Keyring) -> None:
    doc = _doc(keyring)
    doc.providers[1].record["refresh_token"] = doc.providers[0].record["refresh_token"]
    with pytest.raises(InvalidField) as raised:
        validate_export(doc, keyring)
    assert raised.value.field == "providers[1].record.refresh_token"
    other = Keyring.from_secret(base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(InvalidField, match="access_token"):
        validate_export(_doc(keyring), other)


def test_pool_members_must_be_in_the_export(keyring: Keyring) -> None:
    doc = _doc(keyring)
    assert doc.agents[0].pool is not None
    doc.agents[0].pool["providers"] = '["a", "a"]'
    with pytest.raises(InvalidField) as raised:
        validate_export(doc, keyring)
    assert raised.value.field == "agents[0].pool.providers[1]"
