"""Names and identities are checked whole: Python's ``$`` also matches before a final newline."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from codexpool_shared.config import InfraSettings
from codexpool_shared.store.errors import InvalidField
from codexpool_shared.store.providers import validate_identity, validate_name


@pytest.mark.parametrize("name", ["acct-1\n", "acct-1\r\n", "Acct", ""])
def test_a_name_with_anything_after_the_slug_is_refused(name: str) -> None:
    with pytest.raises(InvalidField):
        validate_name(name)


def test_a_slug_is_a_name() -> None:
    assert validate_name("chatgpt-oauth-account-1") == "chatgpt-oauth-account-1"


@pytest.mark.parametrize(
    ("account_id", "email", "field"),
    [
        ("acct\n", None, "x.account_id"),
        ("a" * 201, None, "x.account_id"),
        ("acct", "user@example.com\n", "x.email"),
        ("acct", "u" * 321, "x.email"),
    ],
)
def test_identities_are_checked_whole(account_id: str, email: str | None, field: str) -> None:
    with pytest.raises(InvalidField) as refused:
        validate_identity(account_id, email, None, "x")
    assert refused.value.field == field


def test_a_namespace_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError):
        InfraSettings.model_validate({"CODEXPOOL_NAMESPACE": "codexpool\n"})
