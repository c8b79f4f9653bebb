"""The one reading of a provider's egress proxy URL (issue 19): which URLs are usable, what is
shown of them, and what the router and the admin API connect with."""

from __future__ import annotations

import pytest

from codexpool_shared.store.egress import parse_proxy, shown_proxy
from codexpool_shared.store.errors import InvalidField

SECRET = "s3cret"


@pytest.mark.parametrize(
    ("url", "shown", "auth"),
    [
        (f"http://u:{SECRET}@proxy.example:3128", "http://proxy.example:3128", ("u", SECRET)),
        ("https://[::1]:8443/", "https://[::1]:8443", None),
        ("http://proxy.example", "http://proxy.example", None),
        (f"socks5://u:{SECRET}@127.0.0.1:1081", "socks5://127.0.0.1:1081", ("u", SECRET)),
        ("socks5h://proxy.example", "socks5h://proxy.example:1080", None),
        ("socks5://p%40ol:pa%3Ass@h:9050", "socks5://h:9050", ("p@ol", "pa:ss")),
    ],
)
def test_usable_urls_are_taken_apart(url: str, shown: str, auth: tuple[str, str] | None) -> None:
    target = parse_proxy(url)
    assert target.shown == shown == shown_proxy(url)
    assert target.auth == auth
    assert SECRET not in repr(target)


@pytest.mark.parametrize(
    "url",
    [
        f"socks4://u:{SECRET}@h:1080",
        f"ftp://u:{SECRET}@h",
        "http://",
        f"http://u:{SECRET}@h:99999",
        "http://h:0",
        "http://h:3128/path",
        "http://h:3128?q=1",
        "socks5://u@h:1080",
        f"socks5://:{SECRET}@h:1080",
        "socks5://:@h:1080",
        f"socks5://{'u' * 256}:{SECRET}@h:1080",
        "not a url",
        "",
    ],
)
def test_malformed_or_unsupported_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(InvalidField) as refused:
        parse_proxy(url)
    assert refused.value.field == "proxy_url"
    assert SECRET not in str(refused.value)
