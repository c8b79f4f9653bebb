"""``encode_outcome`` writes, without validating, exactly the body the outcome model would."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from codexpool_shared.events import (
    Attempt,
    AttemptFields,
    Decision,
    DecisionFields,
    RequestOutcomeV1,
    TokenUsage,
    encode_outcome,
)
from codexpool_shared.messaging import codec

ATTEMPTS: list[AttemptFields] = [
    {
        "provider": "account-1",
        "outcome": "usage_limit",
        "status_code": 429,
        "ttfb_ms": 0.1,
        "duration_ms": 1e-7,
        "fallback": False,
        "error_code": "usage_limit_reached",
    },
    {
        "provider": "account-2",
        "outcome": "success",
        "status_code": 200,
        "ttfb_ms": 1234.5678901234,
        "duration_ms": 98765432.123,
        "fallback": True,
        "error_code": None,
    },
    {
        "provider": "account-3",
        "outcome": "cancelled",
        "status_code": None,
        "ttfb_ms": None,
        "duration_ms": 0.0,
        "fallback": True,
        "error_code": None,
    },
]

DECISION: DecisionFields = {
    "candidates": [
        {
            "provider": "account-1",
            "eligible": True,
            "reason": "affinity",
            "rank": 0,
            "until": None,
            "detail": None,
        },
        {
            "provider": "account-4",
            "eligible": True,
            "reason": "beyond_attempt_limit",
            "rank": None,
            "until": None,
            "detail": None,
        },
        {
            "provider": "account-5",
            "eligible": False,
            "reason": "cooldown",
            "rank": None,
            "until": datetime(2026, 12, 5, 1, 2, 3, 456789, UTC),
            "detail": "usage_limit",
        },
        {
            "provider": "account-6",
            "eligible": False,
            "reason": "circuit_open",
            "rank": None,
            "until": datetime.fromtimestamp(1_796_000_000_456 / 1000, UTC),
            "detail": None,
        },
        {
            "provider": "account-7",
            "eligible": False,
            "reason": "probe_in_progress",
            "rank": None,
            "until": datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC),
            "detail": None,
        },
    ],
    "pool_size": 7,
    "local_snapshot": True,
}

FULL: dict[str, Any] = {
    "request_id": "req_01",
    "agent_id": "agent-1",
    "strategy": "primary-first",
    "pool_version": 7,
    "model": 'gpt-5 "codex" \u00e9\u2028\U0001f600\\',
    "stream": True,
    "attempts": ATTEMPTS,
    "final_provider": "account-2",
    "final_outcome": "success",
    "client_latency_ms": 3.25,
    "usage": TokenUsage(
        input_tokens=12, output_tokens=34, total_tokens=46, reasoning_output_tokens=5
    ),
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "decision": DECISION,
    "overflow": True,
}

BARE: dict[str, Any] = {
    **FULL,
    "strategy": "round-robin",
    "pool_version": None,
    "model": None,
    "stream": False,
    "attempts": [],
    "final_provider": None,
    "final_outcome": "no_eligible_provider",
    "client_latency_ms": 0.0,
    "usage": None,
    "traceparent": None,
    "decision": None,
    "overflow": False,
}


@pytest.mark.parametrize("fields", [FULL, BARE], ids=["full", "bare"])
def test_the_encoded_outcome_is_byte_for_byte_the_models_json(fields: dict[str, Any]) -> None:
    encoded = encode_outcome(**fields)
    decoded = codec.decode(encoded.body)
    assert isinstance(decoded, RequestOutcomeV1)
    assert encoded.model is RequestOutcomeV1
    assert encoded.event_id == str(decoded.event_id)
    assert abs((datetime.now(UTC) - decoded.occurred_at).total_seconds()) < 5
    expected = RequestOutcomeV1(
        event_id=decoded.event_id,
        occurred_at=decoded.occurred_at,
        **{
            **fields,
            "attempts": tuple(Attempt(**attempt) for attempt in fields["attempts"]),
            "decision": fields["decision"] and Decision.model_validate(fields["decision"]),
        },
    )
    assert decoded == expected
    assert encoded.body == expected.model_dump_json().encode()


_HOLD = """
import re
from codexpool_shared.events import encode_outcome
from tests.unit.shared.test_events import FULL

def rss_kib():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read())[1])

encode_outcome(**FULL)
before = rss_kib()
held = [encode_outcome(**FULL).body for _ in range(5000)]
print((rss_kib() - before) / len(held), len(held[0]))
"""


def test_a_held_body_costs_about_its_length() -> None:
    """A publisher holds bodies through a broker outage (10,000 of them): each must cost about
    its length, not the write buffer orjson grew it in (about 8 KiB for a 1.5 KB body, +83 MiB
    at the buffer's bound in ``bench/redis_cost.py --outage-seconds``). A fresh process, so that
    memory freed by other tests cannot hide it."""
    out = subprocess.run(
        [sys.executable, "-c", _HOLD],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
        timeout=60,
    ).stdout.split()
    per_body_kib, length = float(out[0]), int(out[1])
    assert per_body_kib < 2 * length / 1024 + 1, (per_body_kib, length)


def test_occurred_at_without_microseconds_is_written_as_the_model_writes_it() -> None:
    """A whole second (``datetime.now`` gives one once in a million): no fraction in either."""
    event = RequestOutcomeV1(
        occurred_at=datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC), **{**BARE, "attempts": ()}
    )
    assert b'"occurred_at":"2026-12-05T01:02:03Z"' in event.model_dump_json().encode()
    assert orjson.dumps(event.occurred_at, option=orjson.OPT_UTC_Z) == b'"2026-12-05T01:02:03Z"'
