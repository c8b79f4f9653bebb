"""Which decoded outcomes the health service refuses to aggregate."""

from __future__ import annotations

import json
import time

import pytest

from codexpool_health.sanity import insanity
from codexpool_shared.events import RequestOutcomeV1
from codexpool_shared.messaging import MalformedMessageError, encode
from codexpool_shared.messaging.codec import decode
from tests.unit.health.factories import attempt, outcome_event

NOW = time.time()


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (outcome_event(NOW, attempt("p1")), None),
        (outcome_event(NOW + 299, attempt("p1")), None),
        (outcome_event(NOW - 86_000, attempt("p1")), None),
        (outcome_event(NOW + 301, attempt("p1")), "future"),
        (outcome_event(NOW - 86_401, attempt("p1")), "stale"),
        (outcome_event(NOW, attempt("p" * 64)), "bad_name"),
        (outcome_event(NOW, attempt("P1")), "bad_name"),
        (outcome_event(NOW, attempt("p1"), agent="a" * 5000), "bad_name"),
        (outcome_event(NOW, attempt("p1"), final_provider="x y"), "bad_name"),
        (outcome_event(NOW, attempt("p1"), model="m" * 201), "bad_name"),
        (outcome_event(NOW, agent="agent-1"), None),
    ],
)
def test_insanity(event: RequestOutcomeV1, reason: str | None) -> None:
    assert insanity(event, NOW, max_future_s=300.0, max_age_s=86_400.0) == reason


def test_an_unknown_field_is_malformed_with_its_own_reason() -> None:
    body = json.loads(encode(outcome_event(NOW, attempt("p1"))))
    body["attempts"][0]["newer"] = True
    with pytest.raises(MalformedMessageError) as unknown:
        decode(json.dumps(body).encode())
    assert unknown.value.reason == "unknown_field"
    body["attempts"][0]["outcome"] = "exploded"
    with pytest.raises(MalformedMessageError) as both:
        decode(json.dumps(body).encode())
    assert both.value.reason == "malformed"
