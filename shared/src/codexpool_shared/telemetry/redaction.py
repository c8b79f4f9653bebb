"""Redaction of secrets from anything about to leave the process as text.

Defence in depth (docs/reference/reliability-security.md section 3.3): code should never log a
token in the first place, but if it does, the log handler, error bodies and anything else that calls
``redact`` replace it with ``[REDACTED]``. Two rules apply:

- a mapping key named like a credential (``authorization``, ``cookie``, ``*token*``,
  ``*secret*``, ``*password*``, ``api_key``) has its string value replaced whole;
- inside any string, values shaped like a credential are replaced: JWTs (signature optional,
  as codex-sim issues unsigned ones), ``Bearer <x>``, ``sk-...``, ``cpk_...`` agent keys,
  ``rt_...`` refresh tokens, ``refresh_token=...`` style parameters and URL passwords.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, overload

REDACTED = "[REDACTED]"

_SENSITIVE_KEY = re.compile(
    r"authorization|cookie|token|secret|passw(or)?d|api[-_]?key|credential", re.IGNORECASE
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # key=value / "key": "value" pairs, e.g. a form body or a query string in an error text.
    (
        re.compile(
            r"""(?ix)
            (\b(?:refresh_token|access_token|id_token|client_secret|code_verifier|api_key
               |password|token)
             ["']?\s*[=:]\s*["']?)
            [^\s&"',;}]+
            """
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])(?:sk-|sk_|cpk_)[A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])rt_[A-Za-z0-9._-]{8,}"), REDACTED),
    # user:password@ in URLs (AMQP_URL, REDIS_URL) keeps the user, drops the password.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"), rf"\1{REDACTED}@"),
)


def is_sensitive_key(key: str) -> bool:
    """Whether a field, header or parameter name is one whose value is a credential.

    Args:
        key: The name.

    Returns:
        True for names like ``Authorization``, ``Set-Cookie``, ``refresh_token``,
        ``client_secret``, ``password``, ``api_key``.
    """
    return bool(_SENSITIVE_KEY.search(key))


def redact_text(text: str) -> str:
    """``text`` with every credential-shaped substring replaced by ``[REDACTED]``.

    Args:
        text: Any text.

    Returns:
        The redacted text.
    """
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@overload
def redact(value: str) -> str: ...
@overload
def redact(value: Mapping[str, Any]) -> dict[str, Any]: ...
@overload
def redact(value: list[Any]) -> list[Any]: ...
@overload
def redact(value: tuple[Any, ...]) -> tuple[Any, ...]: ...
@overload
def redact(value: object) -> object: ...
def redact(value: object) -> object:
    """A copy of ``value`` with secrets replaced by ``[REDACTED]``.

    Strings are scanned for credential shapes; mappings have the values of credential-named
    keys replaced (numbers and booleans are kept, so counts such as ``input_tokens`` survive)
    and the rest redacted recursively; lists and tuples are redacted element-wise. Other values
    are returned as they are: format them to text and redact that.

    Args:
        value: What is about to be logged, answered or recorded.

    Returns:
        The redacted copy.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): _redact_item(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact(item) for item in value)
    return value


def _redact_item(key: str, value: object) -> object:
    if is_sensitive_key(key) and not isinstance(value, int | float | bool | None):
        return REDACTED
    return redact(value)
