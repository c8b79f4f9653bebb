"""A provider's egress proxy (issue 19): every upstream request for it leaves through this URL.

Operators run each ChatGPT account through its own proxy so the accounts do not all appear from
one address. The URL may carry credentials (``http://user:pass@host:port``), so it is stored
like the tokens, as an envelope bound to (provider name, ``proxy_url``), and never shown back:
the provider hash also holds ``proxy``, the same URL without user info (scheme, host, port),
which is all the API and the console show.

Supported schemes: ``http`` and ``https`` (credentials sent as ``Proxy-Authorization``), and
``socks5`` and ``socks5h`` (RFC 1928 CONNECT; credentials by RFC 1929 username/password, so a
SOCKS URL carries both or neither). Both SOCKS spellings hand the upstream's host name to the
proxy, which resolves it: DNS leaves from the proxy's network like the traffic does, which is
what an operator who gives an account its own egress wants (``socks5h`` is accepted as curl's
spelling of exactly that; a SOCKS proxy without a port is on 1080). :func:`parse_proxy` is the
one reading of a URL; the router (aiohttp-socks) and the admin API (httpx's socksio) connect from
it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store.errors import InvalidField, NotFound
from codexpool_shared.store.replies import text
from codexpool_shared.store.scripts import render


class EgressFields:
    """Provider-hash fields (``Keys.provider``) of the egress proxy."""

    PROXY_URL: Final = "proxy_url"
    """The proxy URL as an envelope (it may carry credentials)."""
    PROXY: Final = "proxy"
    """The proxy URL without user info, fit to show."""


SCHEMES: Final = ("http", "https", "socks5", "socks5h")
SOCKS_SCHEMES: Final = ("socks5", "socks5h")
SOCKS_PORT: Final = 1080
"""A SOCKS proxy's port when its URL names none (the IANA port of SOCKS)."""
_MAX_LEN = 2048
_MAX_SOCKS_CREDENTIAL = 255
"""RFC 1929 sends each of the username and password with a one-byte length."""

# KEYS[1] provider hash; ARGV[1] envelope ('' removes), ARGV[2] shown URL. Returns 0 when the
# provider does not exist (nothing written), else 1.
_SET_PROXY = render(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then
  redis.call('HDEL', KEYS[1], '{{EgressFields.PROXY_URL}}', '{{EgressFields.PROXY}}')
else
  redis.call('HSET', KEYS[1], '{{EgressFields.PROXY_URL}}', ARGV[1], '{{EgressFields.PROXY}}',
    ARGV[2])
end
return 1
""",
    EgressFields,
)


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    """A checked proxy URL taken apart (``repr`` leaves the password out)."""

    scheme: str
    host: str
    port: int | None
    """None: the scheme's default (an HTTP(S) proxy); a SOCKS proxy always has one."""
    username: str | None
    password: str | None

    def __repr__(self) -> str:
        return f"ProxyTarget({self.shown!r})"

    @property
    def socks(self) -> bool:
        """A SOCKS5 proxy (the router needs its connector, not aiohttp's ``proxy=``)."""
        return self.scheme in SOCKS_SCHEMES

    @property
    def shown(self) -> str:
        """``scheme://host[:port]``: no user info, fit to show and to connect with."""
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{netloc}" + (f":{self.port}" if self.port is not None else "")

    @property
    def auth(self) -> tuple[str, str] | None:
        """(username, password) when the URL carries credentials."""
        if self.username is None:
            return None
        return self.username, self.password or ""


def parse_proxy(url: str) -> ProxyTarget:
    """Check ``url`` is a usable proxy URL and take it apart (user info percent-decoded).

    Raises:
        InvalidField: ``proxy_url`` is malformed or of an unsupported scheme (the message never
            repeats the URL, which may hold a password).
    """
    if len(url) > _MAX_LEN or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidField("proxy_url", "malformed URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidField("proxy_url", "malformed URL") from None
    if parts.scheme not in SCHEMES:
        raise InvalidField("proxy_url", f"unsupported scheme: use one of {', '.join(SCHEMES)}")
    host = parts.hostname
    if not host or port == 0 or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidField("proxy_url", "must be scheme://[user:password@]host[:port]")
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    target = ProxyTarget(parts.scheme, host, port, username, password)
    if not target.socks:
        return target
    if (username, password) != (None, None) and not (username and password):
        raise InvalidField("proxy_url", "a SOCKS proxy takes user:password@ or no credentials")
    if any(len(v.encode()) > _MAX_SOCKS_CREDENTIAL for v in (username or "", password or "")):
        raise InvalidField("proxy_url", "SOCKS credentials are at most 255 bytes each")
    return ProxyTarget(target.scheme, host, port or SOCKS_PORT, username, password)


def shown_proxy(url: str) -> str:
    """``url`` without its user info, after checking it is a usable proxy URL.

    Raises:
        InvalidField: as :func:`parse_proxy`.
    """
    return parse_proxy(url).shown


async def set_proxy(
    redis: Redis, keys: Keys, keyring: Keyring, name: str, url: str | None
) -> str | None:
    """Set (or with ``None`` remove) the provider's egress proxy.

    Returns:
        The URL as shown (no user info), or None when removed.

    Raises:
        InvalidField: The URL is malformed or unsupported.
        NotFound: No such provider.
    """
    shown = None if url is None else shown_proxy(url)
    envelope = (
        "" if url is None else keyring.encrypt(url, record=name, field=EgressFields.PROXY_URL)
    )
    done = await redis.eval(_SET_PROXY, 1, keys.provider(name), envelope, shown or "")
    if not done:
        raise NotFound("provider", name)
    return shown


async def read_proxies(redis: Redis, keys: Keys) -> dict[str, str]:
    """Every provider's proxy envelope, for the providers that have one."""
    names = sorted(text(n) for n in await redis.smembers(keys.providers))
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hget(keys.provider(name), EgressFields.PROXY_URL)
        rows = await pipe.execute()
    return {name: text(row) for name, row in zip(names, rows, strict=True) if row}


def proxy_url(keyring: Keyring, name: str, envelope: str) -> str:
    """The plaintext proxy URL of ``name`` (raises ``DecryptionError`` on a key mismatch)."""
    return keyring.decrypt(envelope, record=name, field=EgressFields.PROXY_URL)
