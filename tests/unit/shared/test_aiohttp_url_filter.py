from __future__ import annotations

from yarl import URL

from codexpool_shared.telemetry.instrumentation import _redact_url


def test_aiohttp_url_filter_takes_a_yarl_url_and_redacts_tokens() -> None:
    url = URL("http://sim.local/backend-api/codex/responses?access_token=canary-secret-value")
    redacted = _redact_url(url)
    assert isinstance(redacted, str)
    assert "canary-secret-value" not in redacted
    assert redacted.startswith("http://sim.local/backend-api/codex/responses")
