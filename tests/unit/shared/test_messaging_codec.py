from __future__ import annotations

import json
from pathlib import Path

import pytest

from codexpool_shared.events import RequestOutcomeV1
from codexpool_shared.messaging import (
    DELIVERY_LIMIT,
    MalformedMessageError,
    Topology,
    decode,
    encode,
)
from codexpool_shared.testing.messaging import sample_outcome

FIXTURES = Path(__file__).resolve().parents[2] / "contract" / "fixtures"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*/*.json")), ids=lambda p: p.name)
def test_golden_payloads_survive_the_codec(path: Path) -> None:
    event = decode(path.read_bytes())
    assert decode(encode(event)) == event


def test_roundtrip_keeps_the_model() -> None:
    event = sample_outcome()
    decoded = decode(encode(event))
    assert isinstance(decoded, RequestOutcomeV1)
    assert decoded == event


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[]",
        json.dumps({"type": "request.outcome.v9"}).encode(),
        json.dumps({"type": "something.else.v1", "event_id": "x"}).encode(),
        json.dumps(
            {**json.loads(sample_outcome().model_dump_json()), "stream": "perhaps"}
        ).encode(),
    ],
    ids=["bad-json", "empty", "not-an-object", "unknown-version", "unknown-type", "bad-field"],
)
def test_malformed_bodies_are_refused_without_echoing_them(body: bytes) -> None:
    with pytest.raises(MalformedMessageError) as caught:
        decode(body)
    assert "perhaps" not in str(caught.value)
    assert "not json" not in str(caught.value)


def test_topology_names_derive_from_the_namespace() -> None:
    topology = Topology("ns-1")
    assert topology.exchange == "ns-1.events"
    assert topology.dlx == "ns-1.dlx"
    assert topology.health_queue == "ns-1.health.outcomes"
    assert topology.health_dlq == "ns-1.health.outcomes.dlq"
    assert topology.queue_arguments(topology.health_queue) == {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "ns-1.dlx",
        "x-dead-letter-routing-key": "ns-1.health.outcomes",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
