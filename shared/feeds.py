"""Fetching feeds politely and safely, and deciding when to poll next. No database, no Celery.

fetch(): httpx with conditional GET, a size cap, timeouts, every redirect hop checked against the
address rules; it never raises for a bad feed, it reports. next_poll(): the schedule after a poll,
from the answer, the feed's own hints and the backoff policy.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

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
    """http(s) only; hosts resolving to private, loopback or link-local addresses only when allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"only http and https URLs are fetched: {url}")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 0, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UnresolvableHost(f"cannot resolve {parts.hostname} ({exc.strerror})") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            raise UnsafeURL(
                f"{parts.hostname} is a private, loopback or link-local address ({address}); "
                "set INGEST_FEEDS_ALLOW_PRIVATE=true to allow it"
            )


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
    """One poll: follows redirects itself so that every hop is checked. Never raises for a bad feed."""
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
    except UnsafeURL as exc:
        return FetchResult(status=None, error=str(exc))
    except UnresolvableHost as exc:
        return FetchResult(status=None, error=str(exc), network=True)
    except httpx.TimeoutException:
        return FetchResult(status=None, error=f"timed out after {limits.timeout:g}s", network=True)
    except httpx.TransportError as exc:
        return FetchResult(status=None, error=f"cannot connect ({exc or type(exc).__name__})", network=True)


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
