# ruff: noqa: F811 - the OTLP sink fixture is imported by name and requested as a parameter
"""Every request accounted: cancelled attempts in the outcome event, refusals as events too."""

from __future__ import annotations

import httpx
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from prometheus_client.parser import text_string_to_metric_families

from codexpool_shared.store import create_agent
from codexpool_shared.testing.processes import Service
from tests.e2e.conftest import EventTap, poll
from tests.e2e.router.conftest import Pool, Sim
from tests.e2e.test_health_trace import Exported, OtlpSink, exporting, otlp  # noqa: F401

REQUEST = {"model": "gpt-5-codex", "input": "hi", "stream": True}


def metric(text: str, name: str) -> float:
    """The sum of every sample of ``name`` (a counter's ``_total`` or a gauge)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


async def scrape(router: Service) -> str:
    async with httpx.AsyncClient(base_url=router.url, timeout=10) as c:
        response = await c.get("/metrics")
        response.raise_for_status()
        return response.text


async def test_a_client_gone_before_the_first_byte_leaves_the_attempt_in_the_event(
    sim: Sim, pool: Pool, routers, events: EventTap, otlp: tuple[OtlpSink, str]
) -> None:
    sink, endpoint = otlp
    await pool.setup(sim, [1], strategy="primary-first")
    [router] = routers(1, **exporting(endpoint), OTEL_TRACES_SAMPLER="parentbased_always_on")
    sim.patch(1, ttfb_ms=4000)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=0.5) as c:
        try:
            await c.post("/v1/responses", json=REQUEST)
        except httpx.ReadTimeout:
            pass
        else:
            raise AssertionError("the sim answered before its time to first byte")
    [event] = await events.wait_for("request.outcome.v1", 1)
    assert event["final_outcome"] == "cancelled"
    [attempt] = event["attempts"]
    assert (attempt["provider"], attempt["outcome"], attempt["status_code"]) == (
        "account-1",
        "cancelled",
        None,
    )
    assert attempt["duration_ms"] > 0

    async def settled() -> str | None:
        text = await scrape(router)
        return text if metric(text, "codexpool_router_in_flight") == 0 else None

    text = await poll(settled)
    assert metric(text, "codexpool_router_attempts_total") == 1

    async def attempt_span() -> Exported | None:
        # A span is exported only once it has ended.
        with sink.lock:
            attempts = (e for e in sink.spans if e.span.kind == Span.SPAN_KIND_CLIENT)
            return next((e for e in attempts if e.span.name == "POST codex/responses"), None)

    ended = (await poll(attempt_span)).span
    outcome = next(a.value.string_value for a in ended.attributes if a.key == "codexpool.outcome")
    assert outcome == "cancelled"
    assert ended.status.code == Status.STATUS_CODE_ERROR


async def test_published_events_reconcile_with_requests_total(
    sim: Sim, pool: Pool, routers, events: EventTap
) -> None:
    await pool.setup(sim, [1, 2], strategy="round-robin")
    _, poolless_key = await create_agent(pool.redis, pool.keys, "agent-without-pool")
    [router] = routers(1)
    answers = []
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as c:
        good = {"Authorization": f"Bearer {pool.api_key}"}
        for _ in range(3):
            answers.append((await c.post("/v1/responses", json=REQUEST, headers=good)).status_code)
        refusals = [
            ({}, REQUEST),
            ({"Authorization": "Bearer cpk_unknown"}, REQUEST),
            ({"Authorization": f"Bearer {poolless_key}"}, REQUEST),
            (good, {"input": "no model"}),
        ]
        for headers, body in refusals:
            path = "/backend-api/codex/responses"
            answers.append((await c.post(path, json=body, headers=headers)).status_code)
    assert answers == [200, 200, 200, 401, 401, 503, 400]

    rejected = await events.wait_for("request.rejected.v1", 4)
    outcomes = await events.wait_for("request.outcome.v1", 3)
    text = await scrape(router)
    requests_total = metric(text, "codexpool_router_requests_total")
    dropped = metric(text, "codexpool_events_dropped_total")
    assert requests_total == 7
    # Every answer, errors included, is timed from arrival to its first and last byte.
    assert metric(text, "codexpool_router_request_duration_seconds_count") == 7
    assert metric(text, "codexpool_router_request_ttfb_seconds_count") == 7
    assert len(outcomes) + len(rejected) + dropped == requests_total
    assert [(e["reason"], e["status_code"], e["route"]) for e in rejected] == [
        ("missing_api_key", 401, "codex"),
        ("invalid_api_key", 401, "codex"),
        ("no_pool", 503, "codex"),
        ("missing_required_parameter", 400, "codex"),
    ]
    assert [e["agent_id"] for e in rejected] == [None, None, "agent-without-pool", None]
    assert metric(text, "codexpool_router_in_flight") == 0
    states = {
        (s.labels["provider"], s.labels["state"])
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "codexpool_router_account_state" and s.value == 1
    }
    assert states == {("account-1", "closed"), ("account-2", "closed")}
