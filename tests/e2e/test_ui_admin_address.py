"""Failed sign-ins through the UI are limited per browser address, not per UI process.

Real admin API and UI processes on the real Redis: the UI names the browser's address in
``X-Forwarded-For`` and the admin API, which trusts the UI's address (127.0.0.1 here) as a
proxy, counts failures under it. Browsers are simulated by sending ``X-Forwarded-For`` to the UI,
which trusts 127.0.0.1 as its own proxy, as it would trust an ingress in front of it.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from redis import Redis

from codexpool_shared.keys import Keys
from codexpool_shared.testing.cleanup import delete_namespaces, run_blocking
from codexpool_shared.testing.infra import InfraUrls, unique_namespace
from codexpool_shared.testing.processes import ServiceSpec, free_port, run_services
from tests.e2e.conftest import service_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LIMIT = 4
ADMIN_TOKEN = "e2e-bootstrap-admin-" + base64.b32encode(os.urandom(15)).decode()
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Stack:
    ui: str
    admin_api: str
    keys: Keys
    redis: Redis

    def failures(self, address: str) -> int | None:
        """Failed authentications the admin API has counted for ``address`` in this window."""
        value = self.redis.get(self.keys.auth_failures(address))
        return None if value is None else int(value)

    def browser(self, address: str | None = None, *, source: str | None = None) -> httpx.Client:
        """A browser behind the UI's trusted proxy at ``address``, or connecting from ``source``."""
        headers = {"X-Forwarded-For": address} if address else {}
        transport = httpx.HTTPTransport(local_address=source) if source else None
        return httpx.Client(base_url=self.ui, headers=headers, transport=transport, timeout=20)


@pytest.fixture(scope="module")
def stack(infra: InfraUrls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    namespace = unique_namespace()
    admin_port = free_port()
    env = service_env(
        infra,
        namespace,
        CODEXPOOL_ADMIN_TOKEN=ADMIN_TOKEN,
        CODEXPOOL_ADMIN_API_URL=f"http://127.0.0.1:{admin_port}",
        ADMIN_AUTH_FAILURES_PER_WINDOW=str(LIMIT),
        ADMIN_AUTH_FAILURE_WINDOW_S="300",
        # The UI (and the test, as the UI's proxy) connect from loopback: believe it alone.
        FORWARDED_ALLOW_IPS="127.0.0.1",
    )
    specs = [
        ServiceSpec("codexpool_admin_api", env, port=admin_port, name="admin-api"),
        ServiceSpec("codexpool_ui", env, name="ui"),
    ]
    logs = tmp_path_factory.mktemp("ui-admin-address") / "logs"
    with (
        run_services(specs, log_dir=logs) as [admin_api, ui],
        Redis.from_url(infra.redis_url, socket_timeout=5) as redis,
    ):
        yield Stack(ui.url, admin_api.url, Keys(namespace), redis)
    run_blocking(delete_namespaces(infra.redis_url, infra.amqp_url, [namespace]))


def sign_in(browser: httpx.Client, token: str) -> httpx.Response:
    form = browser.get("/login")
    found = _CSRF.search(form.text)
    assert found, form.text
    return browser.post("/login", data={"token": token, "csrf_token": found.group(1)})


def test_wrong_tokens_from_one_browser_do_not_lock_out_another(stack: Stack) -> None:
    a, b = "203.0.113.10", "203.0.113.20"
    with stack.browser(a) as browser_a, stack.browser(b) as browser_b:
        for _ in range(LIMIT):
            refused = sign_in(browser_a, "cpa_wrong-token")
            assert refused.status_code == 401
            assert "The admin API did not accept this token." in refused.text
        assert stack.failures(a) == LIMIT

        locked = sign_in(browser_a, ADMIN_TOKEN)
        assert locked.status_code == 429
        assert "too many failed authentication attempts" in locked.text

        signed_in = sign_in(browser_b, ADMIN_TOKEN)
        assert signed_in.status_code == 303, signed_in.text
        page = browser_b.get("/agents")
        assert page.status_code == 200
        assert 'data-testid="role-badge">admin<' in page.text

    # Counted under the browser's address, never under the UI's own.
    assert stack.failures(b) is None
    assert stack.failures("127.0.0.1") is None


def test_an_untrusted_peer_cannot_name_its_own_address(stack: Stack) -> None:
    # 127.0.0.2 is a peer neither service trusts as a proxy: its X-Forwarded-For is ignored, by
    # the UI (which forwards the address it resolved itself) and by the admin API alike.
    made_up = "198.51.100.30"
    with stack.browser(made_up, source="127.0.0.2") as browser:
        assert sign_in(browser, "cpa_wrong-token").status_code == 401
    assert stack.failures("127.0.0.2") == 1

    with httpx.Client(
        base_url=stack.admin_api, transport=httpx.HTTPTransport(local_address="127.0.0.2")
    ) as direct:
        response = direct.get(
            "/api/me",
            headers={"Authorization": "Bearer cpa_wrong-token", "X-Forwarded-For": made_up},
        )
        assert response.status_code == 401
    assert stack.failures("127.0.0.2") == 2
    assert stack.failures(made_up) is None


def test_signing_out_ends_the_session_on_the_server(stack: Stack) -> None:
    def stored() -> set[bytes]:
        return set(stack.redis.scan_iter(match=stack.keys.ui_session("*")))

    before = stored()
    with stack.browser() as browser:
        assert sign_in(browser, ADMIN_TOKEN).status_code == 303
        cookie = browser.cookies["codexpool_session"]
        assert len(stored() - before) == 1, "the session is kept in Redis"
        page = browser.get("/agents")
        assert page.status_code == 200
        found = _CSRF.search(page.text)
        assert found, page.text
        assert browser.post("/logout", data={"csrf_token": found.group(1)}).status_code == 303
    assert stored() == before
    with stack.browser() as replay:
        replay.cookies.set("codexpool_session", cookie)
        replayed = replay.get("/agents")
    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith("/login")
