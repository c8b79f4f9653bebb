"""A provider's egress proxy through the admin API (issue 19): set (http, https, socks5,
socks5h), shown without credentials, removed with null, malformed or unsupported URLs refused
with 422; the URL is stored encrypted and its password appears in no answer or audit record."""

from __future__ import annotations

from typing import cast

import redis
from fastapi.testclient import TestClient

from codexpool_shared.keys import Keys
from tests.integration.admin_api.helpers import error, register, viewer_headers

SECRET = "proxy-pass-w0rd"


def test_a_proxy_is_set_shown_without_credentials_and_removed(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    register(api, "acct-1")
    url = f"http://user:{SECRET}@proxy.example:3128"
    patched = api.patch("/api/providers/acct-1", json={"proxy_url": url})
    assert patched.status_code == 200, patched.text
    assert patched.json()["proxy"] == "http://proxy.example:3128"
    assert patched.json()["status"] == "active"  # status untouched
    stored = cast(dict[bytes, bytes], sync_redis.hgetall(keys.provider("acct-1")))
    assert stored[b"proxy_url"].startswith(b"v1:") and SECRET.encode() not in stored[b"proxy_url"]
    answers = [
        patched,
        api.get("/api/providers/acct-1"),
        api.get("/api/providers"),
        api.get("/api/providers", headers=viewer_headers(api)),
        api.get("/api/audit"),
        api.get("/api/export"),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert SECRET not in answer.text and "user:" not in answer.text
    # A status change leaves the proxy alone; null removes it.
    assert api.patch("/api/providers/acct-1", json={"status": "disabled"}).json()["proxy"]
    removed = api.patch("/api/providers/acct-1", json={"proxy_url": None})
    assert removed.status_code == 200 and removed.json()["proxy"] is None
    assert b"proxy_url" not in cast(dict[bytes, bytes], sync_redis.hgetall(keys.provider("acct-1")))
    https = api.patch("/api/providers/acct-1", json={"proxy_url": "https://[::1]:8443/"})
    assert https.json()["proxy"] == "https://[::1]:8443"
    for url, shown in (
        (f"socks5://user:{SECRET}@10.0.0.7:1081", "socks5://10.0.0.7:1081"),
        ("socks5h://proxy.example", "socks5h://proxy.example:1080"),
    ):
        socks = api.patch("/api/providers/acct-1", json={"proxy_url": url})
        assert socks.status_code == 200, socks.text
        assert socks.json()["proxy"] == shown and SECRET not in socks.text


def test_malformed_or_unsupported_proxy_urls_are_refused(api: TestClient) -> None:
    register(api, "acct-1")
    for bad in (
        f"socks4://u:{SECRET}@h:1080",
        f"socks5://:{SECRET}@h:1080",
        f"ftp://u:{SECRET}@h",
        "http://",
        f"http://u:{SECRET}@h:99999",
        "http://h:3128/path",
        "http://h:3128?q=1",
        "not a url",
        "",
    ):
        refused = api.patch("/api/providers/acct-1", json={"proxy_url": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert error(refused)["param"] == "proxy_url"
        assert SECRET not in refused.text
    assert api.get("/api/providers/acct-1").json()["proxy"] is None
    missing = api.patch("/api/providers/nope", json={"proxy_url": "http://h:1"})
    assert missing.status_code == 404
