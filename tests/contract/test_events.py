from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import ValidationError

from codexpool_shared.events import (
    EVENT_MODELS,
    Attempt,
    EventAdapter,
    RequestOutcomeV1,
    event_type,
)
from codexpool_shared.events.schemas import render_schemas
from tests.conftest import REPO_ROOT

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = sorted(FIXTURES.glob("*/*.json"))


def test_every_event_type_has_golden_payloads() -> None:
    covered = {path.parent.name for path in GOLDEN}
    assert covered == {event_type(model) for model in EVENT_MODELS}


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_payload_parses_forever(path: Path) -> None:
    raw = path.read_bytes()
    event = EventAdapter.validate_json(raw)
    assert event.type == path.parent.name
    again = EventAdapter.validate_json(EventAdapter.dump_json(event))
    assert again == event
    assert str(event.event_id) == json.loads(raw)["event_id"]


def test_committed_schemas_are_up_to_date() -> None:
    directory = REPO_ROOT / "shared" / "schemas"
    expected = render_schemas()
    committed = {p.name: p.read_text() for p in directory.glob("*.json")}
    assert committed == expected, "event schemas are stale: run `make schemas` and commit"


def test_events_are_frozen_and_tagged() -> None:
    event = RequestOutcomeV1(
        request_id="r",
        agent_id="a",
        strategy="round-robin",
        stream=False,
        final_outcome="success",
        client_latency_ms=1.0,
        attempts=(Attempt(provider="p", outcome="success", duration_ms=1.0),),
    )
    with pytest.raises(ValidationError):
        event.agent_id = "b"  # type: ignore[misc]
    assert event.event_id.version == 7
    assert json.loads(EventAdapter.dump_json(event))["type"] == "request.outcome.v1"


def test_unknown_fields_are_refused_at_every_level() -> None:
    # Consumers forbid what they do not know; producers add a field only once they all know it.
    payload = json.loads((FIXTURES / "pool.changed.v1" / "v1-member-removed.json").read_text())
    payload["added_in_a_later_release"] = {"anything": 1}
    with pytest.raises(ValidationError, match="extra_forbidden"):
        EventAdapter.validate_python(payload)
    outcome = json.loads((FIXTURES / "request.outcome.v1" / "v1-failover.json").read_text())
    outcome["attempts"][0]["unknown"] = 1
    with pytest.raises(ValidationError, match="extra_forbidden"):
        EventAdapter.validate_python(outcome)


@pytest.mark.parametrize(
    "mutation",
    [
        {"type": "request.outcome.v9"},
        {"final_outcome": "exploded"},
        {"strategy": "random"},
        {"client_latency_ms": -1},
    ],
)
def test_invalid_payloads_are_refused(mutation: dict[str, object]) -> None:
    payload = json.loads((FIXTURES / "request.outcome.v1" / "v1-failover.json").read_text())
    payload.update(mutation)
    with pytest.raises(ValidationError):
        EventAdapter.validate_python(payload)


def test_uuid7_ids_sort_by_creation() -> None:
    from codexpool_shared.ids import uuid7

    ids = [uuid7() for _ in range(50)]
    assert all(i.version == 7 and i.variant == "specified in RFC 4122" for i in ids)
    assert [i.int >> 80 for i in ids] == sorted(i.int >> 80 for i in ids)


def test_uuid7_strings_are_canonical_uuid7s_that_sort_by_creation() -> None:
    from codexpool_shared.ids import uuid7_str

    texts = [uuid7_str() for _ in range(50)]
    ids = [UUID(t) for t in texts]
    assert [str(i) for i in ids] == texts
    assert all(i.version == 7 and i.variant == "specified in RFC 4122" for i in ids)
    assert [i.int >> 80 for i in ids] == sorted(i.int >> 80 for i in ids)
    assert len(set(texts)) == len(texts)
