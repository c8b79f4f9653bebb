"""The providers page sets and removes a provider's egress proxy (issue 19): the URL goes in
through a password field and comes back only as scheme://host:port."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.unit.ui.conftest import sign_in
from tests.unit.ui.fake_admin import ADMIN_TOKEN, VIEWER_TOKEN, FakeAdmin

NAME = "chatgpt-oauth-account-1"
SECRET = "proxy-pass-in-the-ui"


def test_an_admin_sets_and_removes_a_proxy_without_ever_seeing_its_password(
    client: TestClient, fake: FakeAdmin
) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    page = client.get("/providers").text
    assert f'data-testid="proxy-input-{NAME}"' in page and 'type="password"' in page
    url = f"http://user:{SECRET}@proxy.example:3128"
    done = client.post(f"/providers/{NAME}/proxy", data={"csrf_token": csrf, "proxy_url": url})
    assert done.status_code == 303 and done.headers["location"].endswith("provider-proxy-set")
    page = client.get(done.headers["location"]).text
    assert "via http://proxy.example:3128" in page and SECRET not in page
    bad = client.post(f"/providers/{NAME}/proxy", data={"csrf_token": csrf, "proxy_url": "ftp://x"})
    assert bad.status_code == 422 and "proxy_url" in bad.text
    gone = client.post(f"/providers/{NAME}/proxy", data={"csrf_token": csrf, "proxy_url": ""})
    assert gone.headers["location"].endswith("provider-proxy-removed")
    assert fake.providers[NAME]["proxy"] is None
    assert f'data-testid="provider-proxy-{NAME}"' not in client.get("/providers").text


def test_a_viewer_has_no_proxy_form(client: TestClient) -> None:
    sign_in(client, VIEWER_TOKEN)
    assert "proxy-input-" not in client.get("/providers").text
