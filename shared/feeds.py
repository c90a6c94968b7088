"""Fetching feeds politely and safely, and deciding when to poll next. No database, no Celery.

fetch(): httpx with conditional GET, a size cap, timeouts, every redirect hop checked against the
address rules; it never raises for a bad feed, it reports. The address rule is enforced where the
socket is opened: safe_client() gives an httpx.Client whose every TCP connection resolves the host
once, checks every answer and connects to a checked address itself, so DNS answering a public
address to the check and loopback to the connect (rebinding) cannot steer a fetch; the Host header
and TLS server name still come from the URL. next_poll(): the schedule after a poll, from the
answer, the feed's own hints and the backoff policy.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from shared.settings import FeedPolicy

MAX_REDIRECTS = 5
PERMANENT_REDIRECTS = {301, 308}
TEMPORARY_REDIRECTS = {302, 303, 307}
RETRY_AFTER_STATUSES = {429, 503}
JITTER = 0.1  # ±10% on every interval, so feeds added together drift apart


class UnsafeURL(ValueError):
    """A URL the fetcher will not visit (scheme, or an address in a private range)."""


class UnresolvableHost(OSError):
    """DNS gave no answer: a network problem, not the feed's."""


@dataclass(frozen=True)
class FetchLimits:
    timeout: float
    max_bytes: int
    user_agent: str
    allow_private: bool


@dataclass(frozen=True)
class FetchResult:
    status: int | None  # of the final answer; None when no answer came
    body: bytes | None = None
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None  # where every hop was a permanent redirect
    retry_after: float | None = None
    cache_seconds: float | None = None  # Cache-Control max-age, or Expires
    error: str | None = None
    network: bool = False  # no HTTP answer at all: connection, DNS, timeout
    headers: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


def check_url(url: str, allow_private: bool) -> None:
    """http(s) only; an address literal in the URL must pass the address rule.

    Names are not resolved here: PinnedBackend resolves them when connecting and connects to the
    very address it checked, so checking here too would be a second, unpinned lookup.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"only http and https URLs are fetched: {url}")
    if _is_ip_literal(parts.hostname):
        check_address(parts.hostname, parts.hostname, allow_private)


def check_address(host: str, address: str, allow_private: bool) -> None:
    """Private, loopback and link-local addresses (anything not global) only when allowed."""
    checked = ipaddress.ip_address(address.split("%")[0])  # an IPv6 zone ("%eth0") is not part of the address
    if not allow_private and not checked.is_global:
        raise UnsafeURL(
            f"{host} is a private, loopback or link-local address ({checked}); "
            "set INGEST_FEEDS_ALLOW_PRIVATE=true to allow it"
        )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


# -- connecting only to checked addresses ---------------------------------------------------------

Resolver = Callable[[str], list[str]]  # host name -> its addresses, in order; raises UnresolvableHost


def resolve_host(host: str) -> list[str]:
    """The system resolver's addresses for host, in its order, each once."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UnresolvableHost(f"cannot resolve {host} ({exc.strerror})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


class PinnedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, except that a host name is resolved once, here, every answer is
    checked, and the socket is opened to a checked address, never to the name.

    httpcore starts TLS afterwards with server_hostname = the URL's host, and the Host header comes
    from the URL, so certificates and virtual hosts still see the name.
    """

    def __init__(self, allow_private: bool, resolve: Resolver = resolve_host) -> None:
        self._allow_private = allow_private
        self._resolve = resolve
        self._sockets = httpcore.SyncBackend()

    def checked_addresses(self, host: str) -> list[str]:
        addresses = [host] if _is_ip_literal(host) else self._resolve(host)  # a literal needs no DNS
        if not addresses:
            raise UnresolvableHost(f"cannot resolve {host} (no addresses)")
        for address in addresses:  # one bad answer refuses the host: the next lookup might pick it
            check_address(host, address, self._allow_private)
        return addresses

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self.checked_addresses(host):  # in order, as socket.create_connection would
            try:
                return self._sockets.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


DEFAULT_POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
_SSL_CONTEXTS: dict[int, ssl.SSLContext] = {}


def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default SSL context (certifi's CAs, verification on), made once per process: making
    one loads every CA certificate, about 20 ms of CPU, which every fetch and hook delivery paid (a
    tenth of a feed burst's CPU). A context is read, never changed, by the connections made with it,
    so they share one; a forked child makes its own, not the OpenSSL state of its parent."""
    pid = os.getpid()
    if pid not in _SSL_CONTEXTS:
        _SSL_CONTEXTS.clear()
        _SSL_CONTEXTS[pid] = httpx.create_ssl_context()
    return _SSL_CONTEXTS[pid]


class PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport (exception mapping, streaming) over a connection pool on PinnedBackend.

    httpx 0.27/0.28 take no network backend, so the pool HTTPTransport builds is replaced by one
    built the same way (same SSL context, same limits) plus network_backend=.
    """

    def __init__(self, backend: PinnedBackend, limits: httpx.Limits = DEFAULT_POOL_LIMITS) -> None:
        ssl_context = shared_ssl_context()
        super().__init__(verify=ssl_context, limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            # Replacing an attribute httpx no longer reads would connect unpinned, silently.
            raise RuntimeError("httpx.HTTPTransport no longer keeps its pool in _pool; PinnedTransport needs updating")
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


class PinnedClient(httpx.Client):
    """An httpx.Client from safe_client(): redirects not followed, every connection pinned."""

    def __init__(self, transport: PinnedTransport, allow_private: bool, timeout: float) -> None:
        # trust_env=False: an HTTP(S)_PROXY / ALL_PROXY from the environment would take the request
        # to a proxy that resolves the name itself, unpinned. (httpx skips environment proxies when
        # given a transport anyway; this says so, and keeps .netrc and NO_PROXY out of it too.)
        super().__init__(transport=transport, follow_redirects=False, trust_env=False, timeout=timeout)
        self.allow_private = allow_private


def safe_client(limits: FetchLimits, resolve: Resolver | None = None) -> httpx.Client:
    """The client for fetching user-given URLs: each connection goes to an address that passed the
    address rule of limits. resolve stands in for DNS (tests); the default is the system resolver."""
    backend = PinnedBackend(limits.allow_private, resolve or resolve_host)
    return PinnedClient(PinnedTransport(backend), limits.allow_private, limits.timeout)


def _require_pinned(client: httpx.Client, limits: FetchLimits) -> None:
    # check_url no longer resolves names, so an ordinary client would fetch any name unchecked.
    if not isinstance(client, PinnedClient) or (client.allow_private and not limits.allow_private):
        raise TypeError("fetch() needs a client from shared.feeds.safe_client(limits) with the same limits")


def _refusal(exc: BaseException) -> UnsafeURL | UnresolvableHost | None:
    """The refusal from PinnedBackend behind exc, should httpx or httpcore have wrapped it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (UnsafeURL, UnresolvableHost)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


def _cache_seconds(headers: httpx.Headers, now: datetime) -> float | None:
    for directive in headers.get("cache-control", "").split(","):
        name, _, value = directive.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return float(value.strip())
    expires = headers.get("expires")
    if expires:
        try:
            return max(0.0, (parsedate_to_datetime(expires) - now).total_seconds())
        except (TypeError, ValueError):
            return None
    return None


def _read_capped(response: httpx.Response, limit: int) -> bytes | None:
    received = bytearray()
    for chunk in response.iter_bytes():
        received += chunk
        if len(received) > limit:
            return None
    return bytes(received)


def _conditional_headers(etag: str | None, last_modified: str | None, limits: FetchLimits) -> dict:
    headers = {
        "User-Agent": limits.user_agent,
        "Accept": "application/rss+xml, application/atom+xml, "
        "application/feed+json, application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
    }
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def fetch(
    client: httpx.Client, url: str, etag: str | None, last_modified: str | None, limits: FetchLimits
) -> FetchResult:
    """One poll: follows redirects itself so that every hop is checked. Never raises for a bad feed.

    client comes from safe_client(limits): it checks, and connects to, the address of every hop.
    """
    _require_pinned(client, limits)
    headers = _conditional_headers(etag, last_modified, limits)
    permanent, current = True, url
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            check_url(current, limits.allow_private)
            with client.stream("GET", current, headers=headers, timeout=limits.timeout) as response:
                if response.status_code in PERMANENT_REDIRECTS | TEMPORARY_REDIRECTS and "location" in response.headers:
                    permanent = permanent and response.status_code in PERMANENT_REDIRECTS
                    current = urljoin(current, response.headers["location"])
                    continue
                return _answer(response, limits, permanent_url=current if permanent and current != url else None)
        return FetchResult(status=None, error=f"more than {MAX_REDIRECTS} redirects")
    except (UnsafeURL, UnresolvableHost, httpx.TransportError) as exc:
        return _failure(exc, limits)


def _failure(exc: Exception, limits: FetchLimits) -> FetchResult:
    reason = _refusal(exc) or exc
    if isinstance(reason, UnsafeURL):
        return FetchResult(status=None, error=str(reason))
    if isinstance(reason, UnresolvableHost):
        return FetchResult(status=None, error=str(reason), network=True)
    if isinstance(reason, httpx.TimeoutException):
        return FetchResult(status=None, error=f"timed out after {limits.timeout:g}s", network=True)
    return FetchResult(status=None, error=f"cannot connect ({reason or type(reason).__name__})", network=True)


def _answer(response: httpx.Response, limits: FetchLimits, permanent_url: str | None) -> FetchResult:
    now = datetime.now(UTC)
    common = {
        "status": response.status_code,
        "permanent_url": permanent_url,
        "etag": response.headers.get("etag"),
        "last_modified": response.headers.get("last-modified"),
        "retry_after": _retry_after(response.headers.get("retry-after"), now),
        "cache_seconds": _cache_seconds(response.headers, now),
        "headers": dict(response.headers),
    }
    if response.status_code == 304:
        return FetchResult(**common)
    if response.status_code != 200:
        return FetchResult(**common, error=f"HTTP {response.status_code}")
    body = _read_capped(response, limits.max_bytes)
    if body is None:
        return FetchResult(**common, error=f"response larger than {limits.max_bytes} bytes")
    return FetchResult(**common, body=body)


# -- when to poll next ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    next_poll: datetime | None
    error_count: int
    enabled: bool


def _jittered(seconds: float, rng: random.Random) -> float:
    return seconds * (1 + rng.uniform(-JITTER, JITTER))


def next_poll(
    result: FetchResult,
    interval: float,
    error_count: int,
    hint: float | None,
    policy: FeedPolicy,
    now: datetime,
    rng: random.Random | None = None,
) -> Schedule:
    """The schedule after one poll.

    Success: the feed's interval, or later where the feed asks (ttl, max-age, Expires; at most
    hint_max). 410 Gone: disabled. 429/503 with Retry-After: then. Any other failure: the interval
    doubled per consecutive failure, capped at backoff_max, so a broken feed is still probed.
    """
    rng = rng or random.Random()
    if result.status == 410:
        return Schedule(next_poll=None, error_count=error_count + 1, enabled=False)
    if result.ok or result.status == 304:
        wait = max(interval, min(hint or 0.0, policy.hint_max))
        return Schedule(now + timedelta(seconds=_jittered(wait, rng)), 0, True)
    failures = error_count + 1
    if result.status in RETRY_AFTER_STATUSES and result.retry_after is not None:
        wait = min(max(result.retry_after, interval), policy.backoff_max)
        return Schedule(now + timedelta(seconds=wait), failures, True)
    backoff = min(_jittered(interval * 2 ** min(failures, 30), rng), policy.backoff_max)
    return Schedule(now + timedelta(seconds=backoff), failures, True)
