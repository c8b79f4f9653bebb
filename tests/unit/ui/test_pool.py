from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient

from codexpool_shared.errors import ApiError
from codexpool_shared.testing.sessions import InMemoryUiSessions
from codexpool_ui.app import create_app
from tests.unit.ui.conftest import make_settings, sign_in
from tests.unit.ui.fake_admin import ADMIN_TOKEN, VIEWER_TOKEN, FakeAdmin

POOL = "/agents/my-agent/codex-pool"
ONE, TWO, THREE = (f"chatgpt-oauth-account-{i}" for i in (1, 2, 3))


def _testids(html: str) -> set[str]:
    return set(re.findall(r'data-testid="([^"]+)"', html))


def _with_pool(fake: FakeAdmin, *names: str, strategy: str = "round-robin") -> None:
    fake.pools["my-agent"] = {"strategy": strategy, "providers": list(names), "version": 1}


def test_agents_page_links_each_agent_to_its_pool(client: TestClient) -> None:
    sign_in(client, VIEWER_TOKEN)
    page = client.get("/agents")
    assert 'href="/agents/my-agent/codex-pool" data-testid="open-pool-my-agent">Open Pool<' in (
        page.text
    )


def test_the_seed_example_by_form(client: TestClient, fake: FakeAdmin) -> None:
    """Add provider 1, add provider 2, round-robin, Save routing configuration."""
    csrf = sign_in(client, ADMIN_TOKEN)
    page = client.get(POOL)
    assert page.status_code == 200
    assert "routing-empty" in _testids(page.text)
    routing = f"{POOL}/routing"
    step = client.post(
        routing,
        data={"csrf_token": csrf, "action": "add", "add_provider": ONE, "strategy": "round-robin"},
    )
    assert step.status_code == 303
    draft = client.get(step.headers["location"])
    assert {f"routing-item-{ONE}", "unsaved-notice"} <= _testids(draft.text)
    assert fake.pools == {}, "adding to the draft must not save anything"
    step = client.post(
        routing,
        data={
            "csrf_token": csrf,
            "action": "add",
            "add_provider": TWO,
            "strategy": "round-robin",
            "providers": [ONE],
        },
    )
    saved = client.post(
        routing,
        data={
            "csrf_token": csrf,
            "action": "save",
            "strategy": "round-robin",
            "providers": [ONE, TWO],
        },
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{POOL}?notice=saved"
    assert fake.pools["my-agent"]["providers"] == [ONE, TWO]
    assert fake.pools["my-agent"]["strategy"] == "round-robin"
    after = client.get(saved.headers["location"])
    assert "Routing configuration saved." in after.text
    assert {f"row-{ONE}", f"row-{TWO}"} <= _testids(after.text)
    assert f'<option value="{THREE}">' in after.text
    assert f'<option value="{ONE}">' not in after.text


def test_moving_a_provider_changes_the_draft_order(client: TestClient, fake: FakeAdmin) -> None:
    _with_pool(fake, ONE, TWO, THREE)
    csrf = sign_in(client, ADMIN_TOKEN)
    step = client.post(
        f"{POOL}/routing",
        data={
            "csrf_token": csrf,
            "action": "up:2",
            "strategy": "primary-first",
            "providers": [ONE, TWO, THREE],
        },
    )
    assert step.headers["location"] == (
        f"{POOL}?strategy=primary-first&providers={ONE}&providers={THREE}&providers={TWO}"
    )
    page = client.get(step.headers["location"]).text
    assert page.index(f"routing-item-{THREE}") < page.index(f"routing-item-{TWO}")
    assert '<option value="primary-first" selected>' in page


def test_an_admin_api_refusal_shows_its_message(client: TestClient, fake: FakeAdmin) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    response = client.post(
        f"{POOL}/routing", data={"csrf_token": csrf, "action": "save", "strategy": "round-robin"}
    )
    assert response.status_code == 422
    assert "providers: a pool needs at least one provider" in response.text
    assert "Traceback" not in response.text


def test_delete_removes_the_member(client: TestClient, fake: FakeAdmin) -> None:
    _with_pool(fake, ONE, TWO)
    csrf = sign_in(client, ADMIN_TOKEN)
    assert f"delete-{ONE}" in _testids(client.get(POOL).text)
    response = client.post(f"{POOL}/providers/{ONE}/delete", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert fake.pools["my-agent"]["providers"] == [TWO]
    page = client.get(response.headers["location"]).text
    assert f"row-{ONE}" not in _testids(page)
    assert "new requests no longer go to it" in page


def test_refresh_live_state_shows_quota(client: TestClient, fake: FakeAdmin) -> None:
    _with_pool(fake, ONE)
    csrf = sign_in(client, ADMIN_TOKEN)
    response = client.post(f"{POOL}/refresh", data={"csrf_token": csrf})
    assert fake.refreshed == 1
    page = client.get(response.headers["location"]).text
    assert f'data-testid="quota-used-{ONE}-primary">42 % used<' in page
    assert f'data-testid="quota-used-{ONE}-secondary">7.0 % used<' in page
    assert "Primary window (5 h)" in page and "resets in" in page


def test_the_live_fragment_has_fresh_numbers(client: TestClient, fake: FakeAdmin) -> None:
    _with_pool(fake, ONE)
    sign_in(client, VIEWER_TOKEN)
    assert f'data-testid="requests-{ONE}">0<' in client.get(f"{POOL}/live").text
    fake.rows[ONE] = {**fake.row(ONE), "requests": 7, "success_rate": 6 / 7, "fallback_count": 2}
    live = client.get(f"{POOL}/live")
    assert live.headers["cache-control"] == "no-store"
    assert f'data-testid="requests-{ONE}">7<' in live.text
    assert f'data-testid="success-rate-{ONE}">85.7 %<' in live.text
    assert f'data-testid="fallback-count-{ONE}">2<' in live.text
    assert "<html" not in live.text


def test_health_score_explains_itself(client: TestClient, fake: FakeAdmin) -> None:
    _with_pool(fake, ONE)
    fake.rows[ONE] = {**fake.row(ONE), "requests": 3, "health_score": 62.4}
    sign_in(client, VIEWER_TOKEN)
    page = client.get(POOL).text
    assert f'data-testid="health-score-{ONE}">62<' in page
    assert 'title="Health score 62: success rate: 1.0; latency ms p95: 120.0; samples: 0"' in page


def test_viewers_see_no_forms_and_their_posts_are_refused(
    client: TestClient, fake: FakeAdmin
) -> None:
    _with_pool(fake, ONE)
    csrf = sign_in(client, VIEWER_TOKEN)
    page = client.get(POOL)
    ids = _testids(page.text)
    assert "readonly-notice" in ids
    assert not ids & {"routing-form", "save-routing", "refresh-button", f"delete-{ONE}"}
    assert "oauth-table" not in ids
    forged = client.post(
        f"{POOL}/routing",
        data={"csrf_token": csrf, "action": "save", "strategy": "round-robin", "providers": [TWO]},
    )
    assert forged.status_code == 403
    assert "viewer tokens cannot change anything" in forged.text
    assert fake.pools["my-agent"]["providers"] == [ONE]


def test_the_health_formula_is_spelled_out(client: TestClient, fake: FakeAdmin) -> None:
    _with_pool(fake, ONE)
    components = {"fallback_factor": 0.9, "success_rate": 0.8, "latency_factor": 1.0, "samples": 5}
    fake.rows[ONE] = {**fake.row(ONE), "health_score": 72.0, "health_components": components}
    sign_in(client, VIEWER_TOKEN)
    page = client.get(POOL).text
    assert "100 × 0.800 × 1.000 × 0.900" in page
    assert (
        'title="Health score 72: success rate: 0.8; latency factor: 1.0; fallback factor: 0.9'
        in page
    )


def test_admins_see_oauth_link_details_and_can_relink(client: TestClient, fake: FakeAdmin) -> None:
    _with_pool(fake, ONE)
    csrf = sign_in(client, ADMIN_TOKEN)
    page = client.get(POOL).text
    assert f'data-testid="oauth-account-{ONE}"><code>acct-1</code>' in page
    assert "2030-01-01 00:00 UTC" in page
    response = client.post(f"{POOL}/providers/{ONE}/relink", data={"csrf_token": csrf})
    assert response.status_code == 200
    assert 'data-testid="device-code">ABCD-1234<' in response.text
    assert 'href="http://127.0.0.1:8090/codex/device"' in response.text
    assert "before 2030-01-01 00:15 UTC" in response.text
    finish = {
        "csrf_token": csrf,
        "user_code": "ABCD-1234",
        "verification_uri": "http://127.0.0.1:8090/codex/device",
    }
    pending = client.post(f"{POOL}/providers/{ONE}/relink/complete", data=finish)
    assert pending.status_code == 202
    assert "device-pending" in _testids(pending.text)
    assert 'data-testid="device-code">ABCD-1234<' in pending.text
    linked = client.post(f"{POOL}/providers/{ONE}/relink/complete", data=finish)
    assert linked.headers["location"] == f"{POOL}?notice=relinked"


def test_a_device_link_is_only_ever_a_web_address(client: TestClient, fake: FakeAdmin) -> None:
    _with_pool(fake, ONE)
    csrf = sign_in(client, ADMIN_TOKEN)
    fake.device_polls[ONE] = 0
    forged = {"csrf_token": csrf, "user_code": "X", "verification_uri": "javascript:alert(1)"}
    page = client.post(f"{POOL}/providers/{ONE}/relink/complete", data=forged).text
    assert "javascript:" not in page


def test_a_post_without_csrf_token_is_refused(client: TestClient, fake: FakeAdmin) -> None:
    _with_pool(fake, ONE)
    sign_in(client, ADMIN_TOKEN)
    response = client.post(f"{POOL}/providers/{ONE}/delete", data={})
    assert response.status_code == 403
    assert "did not carry a valid CSRF token" in response.text
    assert fake.pools["my-agent"]["providers"] == [ONE]


def test_an_unknown_agent_is_a_clear_404(client: TestClient) -> None:
    sign_in(client, VIEWER_TOKEN)
    response = client.get("/agents/ghost/codex-pool")
    assert response.status_code == 404
    assert "agent &#39;ghost&#39; does not exist" in response.text


@pytest.mark.parametrize("dots", ["%2E", "%2E%2E"])
def test_dot_segments_stay_names_on_the_way_to_the_admin_api(
    client: TestClient, fake: FakeAdmin, dots: str
) -> None:
    sign_in(client, VIEWER_TOKEN)
    fake.calls.clear()
    assert client.get(f"/agents/{dots}/codex-pool").status_code == 404
    name = dots.replace("%2E", ".")
    assert ("GET", f"/api/agents/{name}", VIEWER_TOKEN) in fake.calls
    assert not [path for _, path, _ in fake.calls if path in ("/api/agents", "/api")]


def test_an_unreachable_admin_api_is_a_clear_page() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    app = create_app(
        make_settings(), transport=httpx.MockTransport(refuse), session_store=InMemoryUiSessions()
    )
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/readyz").status_code == 503
        form = client.get("/login")
        assert form.status_code == 200
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf
        response = client.post("/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf[1]})
        assert response.status_code == 502
        assert "the admin API did not answer (ConnectError)" in response.text


def test_an_admin_api_outage_is_named_on_the_page(client: TestClient, fake: FakeAdmin) -> None:
    sign_in(client, VIEWER_TOKEN)
    fake.outage = ApiError(503, "the configuration store is unavailable", code="store_unavailable")
    page = client.get("/agents")
    assert page.status_code == 503
    assert "The admin API is unavailable" in page.text
    assert "the configuration store is unavailable" in page.text


def test_no_redirect_is_built_from_the_host_header(client: TestClient) -> None:
    sign_in(client, VIEWER_TOKEN)
    answer = client.get("/agents/", headers={"Host": "evil.example"})
    assert "evil.example" not in answer.headers.get("location", "")
    assert answer.status_code == 404


def test_latest_requests_open_their_explanation_in_words(
    client: TestClient, fake: FakeAdmin
) -> None:
    _with_pool(fake, ONE, TWO, THREE)
    fake.explanations["req_1"] = {
        "request_id": "req_1",
        "agent_id": "my-agent",
        "at": "2026-12-04T21:00:00Z",
        "strategy": "round-robin",
        "pool_version": 1,
        "model": "gpt-5-codex",
        "stream": False,
        "explained": True,
        "candidates": [
            {"provider": TWO, "eligible": True, "reason": "strategy_order", "rank": 0,
             "until": None, "detail": None},
            {"provider": ONE, "eligible": False, "reason": "cooldown", "rank": None,
             "until": "2026-12-04T22:00:00Z", "detail": "usage_limit"},
        ],
        "attempts": [
            {"provider": TWO, "outcome": "success", "status_code": 200, "ttfb_ms": 5.0,
             "duration_ms": 9.0, "fallback": False, "error_code": None},
        ],
        "final_provider": TWO,
        "final_outcome": "success",
        "client_latency_ms": 12.0,
        "usage": None,
        "words": [f"{ONE} skipped: cooling down until 22:00:00 UTC after usage_limit",
                  f"{TWO} chosen: next in round-robin"],
    }  # fmt: skip
    sign_in(client, VIEWER_TOKEN)
    page = client.get(POOL)
    assert {"request-row-req_1", "request-link-req_1"} <= _testids(page.text)
    assert f'href="{POOL}/requests/req_1"' in page.text
    detail = client.get(f"{POOL}/requests/req_1")
    assert detail.status_code == 200
    assert f"{ONE} skipped: cooling down until 22:00:00 UTC after usage_limit" in detail.text
    assert {f"candidate-{ONE}", f"candidate-{TWO}", "attempt-1"} <= _testids(detail.text)
    assert client.get(f"{POOL}/requests/req_missing").status_code == 404


def test_runway_in_one_sentence_and_the_replay_beside_actual(
    client: TestClient, fake: FakeAdmin
) -> None:
    _with_pool(fake, ONE, TWO)
    sign_in(client, VIEWER_TOKEN)
    page = client.get(POOL)
    assert "Not enough quota history yet to forecast when the pool runs out." in page.text
    fake.forecast = {
        "agent_id": "my-agent",
        "providers": [
            {"provider": ONE, "window": "primary", "used_percent": 62.0,
             "burn_percent_per_hour": 14.5, "exhausts_at": "2099-01-01T03:00:00Z",
             "resets_at": "2099-01-01T05:00:00Z"},
        ],
        "pool": {"runway_s": 3600.0, "exhausts_at": "2099-01-01T03:00:00Z",
                 "limited_by": "primary", "before_reset": True},
    }  # fmt: skip
    page = client.get(POOL)
    assert "runs out of primary quota at 03:00 UTC" in page.text
    assert "before any member&#39;s window resets" in page.text
    assert f"runway-{ONE}-primary" in _testids(page.text)
    assert "replay-form" not in _testids(page.text)  # the replay costs work: admins only
    assert "14.5 %/h" in page.text
    sign_in(client, ADMIN_TOKEN)
    assert "replay-form" in _testids(client.get(POOL).text)
    fake.replay = {
        "requests": 90, "providers": [ONE, TWO], "truncated": False,
        "projected": {"served": 90, "limited": 0, "fallbacks": 0, "first_exhaustion_at": None,
                      "per_provider": {ONE: 45, TWO: 45}},
        "actual": {"served": 90, "limited": 1, "fallbacks": 1, "first_exhaustion_at": None,
                   "per_provider": {ONE: 30, TWO: 60}},
    }  # fmt: skip
    replayed = client.get(POOL, params={"replay": "quota-aware", "replay_hours": 6})
    assert replayed.status_code == 200
    assert fake.bodies[-1] == {"strategy": "quota-aware", "since_s": 21600}
    assert '<td data-testid="replay-projected-limited">0</td>' in replayed.text
    assert '<td data-testid="replay-actual-limited">1</td>' in replayed.text
    assert "90 recorded requests replayed with quota-aware" in replayed.text


def test_the_overflow_is_counted_apart_from_the_members(
    client: TestClient, fake: FakeAdmin
) -> None:
    """Issue 19: the activity page shows the overflow's requests in a table of its own, never
    in a member's row, and not at all for a pool that has none and never had."""
    _with_pool(fake, ONE)
    fake.rows[ONE] = {**fake.row(ONE), "requests": 4, "success_rate": 0.5}
    sign_in(client, VIEWER_TOKEN)
    assert "overflow-table" not in client.get(POOL).text
    fake.overflows["my-agent"] = {
        "base_url": "https://api.example/v1",
        "requests": 3,
        "successes": 2,
        "failures": 1,
        "timeline": [{"t": "2026-01-01T00:00:00Z", "requests": 3, "successes": 2, "failures": 1}],
    }
    for html in (client.get(POOL).text, client.get(f"{POOL}/live").text):
        assert 'data-testid="overflow-target">https://api.example/v1<' in html
        assert 'data-testid="overflow-requests">3<' in html
        assert 'data-testid="overflow-success-rate">66.7 %<' in html
        assert 'data-testid="overflow-failures">1<' in html
        assert f'data-testid="requests-{ONE}">4<' in html  # the member's own count
        assert 'data-testid="row-overflow"' in html and "row-overflow" not in _member_rows(html)
    # Removed since: its earlier requests still show, said so.
    fake.overflows["my-agent"] = {**fake.overflows["my-agent"], "base_url": None}
    live = client.get(f"{POOL}/live").text
    assert 'data-testid="overflow-target">removed (earlier requests still counted)<' in live


def _member_rows(html: str) -> str:
    """The members' table body alone."""
    start = html.index('data-testid="activity-rows"')
    return html[start : html.index("</tbody>", start)]
