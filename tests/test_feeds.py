"""Feed fetching and scheduling against a real HTTP server on loopback, and polls recorded in a real store."""

from __future__ import annotations

import os
import random
import ssl
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared import subscriptions
from shared.db import session_scope
from shared.durations import format_duration, parse_duration
from shared.feeds import (
    FetchLimits,
    FetchResult,
    UnresolvableHost,
    UnsafeURL,
    check_url,
    fetch,
    next_poll,
    safe_client,
    shared_ssl_context,
)
from shared.models import Feed
from shared.opml import Outline, read_opml, write_opml
from shared.polling import poll_feed
from shared.settings import FeedPolicy
from shared.errors import ServiceError
from tests.feedserver import Route, rss

LIMITS = FetchLimits(timeout=2.0, max_bytes=100_000, user_agent="ingest-test/1", allow_private=True)
POLICY = FeedPolicy(default_interval=900, backoff_max=86400, hint_max=86400)
NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
TWO = [("a1", "First story", "The first story, told in full."), ("a2", "Second story", "The second story, told too.")]


@pytest.fixture
def client():
    with safe_client(LIMITS) as http:
        yield http


def test_conditional_get_is_answered_304(feed_server, client):
    """The second fetch sends the validators back and costs no body."""
    feed_server.routes["/rss"] = Route(
        body=rss("News", TWO), etag='"v1"', last_modified="Mon, 06 Mar 2023 10:00:00 GMT"
    )
    first = fetch(client, feed_server.url("/rss"), None, None, LIMITS)
    second = fetch(client, feed_server.url("/rss"), first.etag, first.last_modified, LIMITS)
    assert first.ok and first.body.startswith(b"<?xml") and first.etag == '"v1"'
    assert second.status == 304 and second.body is None
    assert feed_server.hits("/rss")[1].headers["If-None-Match"] == '"v1"'
    assert feed_server.hits("/rss")[0].headers["User-Agent"] == "ingest-test/1"


def test_gzip_responses_are_decoded(feed_server, client):
    feed_server.routes["/gz"] = Route(body=rss("News", TWO), gzip=True)
    assert fetch(client, feed_server.url("/gz"), None, None, LIMITS).body.startswith(b"<?xml")


@pytest.mark.parametrize(("status", "moved"), [(301, True), (308, True), (302, False), (307, False)])
def test_only_permanent_redirects_move_the_subscription(feed_server, client, status, moved):
    feed_server.routes["/old"] = Route(status=status, headers={"Location": "/new"})
    feed_server.routes["/new"] = Route(body=rss("News", TWO))
    result = fetch(client, feed_server.url("/old"), None, None, LIMITS)
    assert result.ok and result.permanent_url == (feed_server.url("/new") if moved else None)


def test_private_addresses_are_refused_unless_allowed(feed_server, client):
    """Loopback is private: refused by default, on the first hop and on every redirect hop."""
    feed_server.routes["/rss"] = Route(body=rss("News", TWO))
    strict = FetchLimits(2.0, 100_000, "ingest-test/1", allow_private=False)
    with safe_client(strict) as strict_client:
        refused = fetch(strict_client, feed_server.url("/rss"), None, None, strict)
    assert refused.status is None and "private" in refused.error and not refused.network
    assert feed_server.hits("/rss") == []
    with pytest.raises(UnsafeURL):
        check_url("file:///etc/passwd", allow_private=True)
    with pytest.raises(UnsafeURL):
        check_url("http://169.254.169.254/latest/meta-data", allow_private=False)


STRICT = FetchLimits(timeout=1.0, max_bytes=100_000, user_agent="ingest-test/1", allow_private=False)
PUBLIC = "93.184.216.34"  # a global address; nothing of ours listens there


class StandInDNS:
    """Stands in for DNS: answers each name from a table and notes every question asked.

    A name's answers are a list of lists, one per question, the last one repeated; an unknown name
    is unresolvable, as with the system resolver.
    """

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, host: str) -> list[str]:
        answers = self.table.get(host)
        self.asked.append(host)
        if answers is None:
            raise UnresolvableHost(f"cannot resolve {host} (no such name)")
        return answers[min(self.asked.count(host), len(answers)) - 1]


def _port(feed_server) -> int:
    return feed_server.httpd.server_address[1]


def test_a_rebinding_name_cannot_steer_the_fetch_to_loopback(feed_server):
    """DNS answering public first and loopback after: the one checked answer is the one connected to."""
    feed_server.routes["/rss"] = Route(body=rss("News", TWO))
    dns = StandInDNS({"rebind.example": [[PUBLIC], ["127.0.0.1"]]})
    with safe_client(STRICT, resolve=dns) as http:
        result = fetch(http, f"http://rebind.example:{_port(feed_server)}/rss", None, None, STRICT)
    assert not result.ok  # the public address does not serve this feed (or cannot be reached)
    assert feed_server.requests == []
    assert dns.asked == ["rebind.example"]


def test_a_pinned_connection_keeps_the_urls_host_header(feed_server):
    """Connecting to the resolved address still sends the URL's name as Host, and asks DNS once."""
    feed_server.routes["/rss"] = Route(body=rss("News", TWO))
    dns = StandInDNS({"feeds.example": [["127.0.0.1"]]})
    with safe_client(LIMITS, resolve=dns) as http:
        result = fetch(http, f"http://feeds.example:{_port(feed_server)}/rss", None, None, LIMITS)
    assert result.ok and result.body.startswith(b"<?xml")
    assert feed_server.hits("/rss")[0].headers["Host"] == f"feeds.example:{_port(feed_server)}"
    assert dns.asked == ["feeds.example"]


def test_a_name_resolving_to_loopback_is_refused_with_the_reason(feed_server):
    """A name whose answers include a loopback address is refused before any connection, with the one-line reason."""
    feed_server.routes["/rss"] = Route(body=rss("News", TWO))
    dns = StandInDNS({"sneaky.example": [[PUBLIC, "127.0.0.1"]]})
    with safe_client(STRICT, resolve=dns) as http:
        result = fetch(http, f"http://sneaky.example:{_port(feed_server)}/rss", None, None, STRICT)
    assert result.status is None and not result.network
    assert result.error == (
        "sneaky.example is a private, loopback or link-local address (127.0.0.1); "
        "set INGEST_FEEDS_ALLOW_PRIVATE=true to allow it"
    )
    assert feed_server.requests == [] and dns.asked == ["sneaky.example"]


def test_every_redirect_hop_is_resolved_and_checked_on_its_own(feed_server):
    """A redirect to another name is resolved and checked again when connecting; its refusal is the poll's error."""
    port = _port(feed_server)
    feed_server.routes["/hop"] = Route(status=302, headers={"Location": f"http://target.example:{port}/rss"})
    feed_server.routes["/lost"] = Route(status=302, headers={"Location": f"http://nowhere.example:{port}/rss"})
    feed_server.routes["/rss"] = Route(body=rss("News", TWO))
    table = {"start.example": [["127.0.0.1"]], "target.example": [["127.0.0.1"]]}
    followed_dns, lost_dns = StandInDNS(table), StandInDNS(table)
    with safe_client(LIMITS, resolve=followed_dns) as http:
        followed = fetch(http, f"http://start.example:{port}/hop", None, None, LIMITS)
    with safe_client(LIMITS, resolve=lost_dns) as http:
        lost = fetch(http, f"http://start.example:{port}/lost", None, None, LIMITS)
    assert followed.ok and feed_server.hits("/rss")[0].headers["Host"] == f"target.example:{port}"
    assert followed_dns.asked == ["start.example", "target.example"]
    assert lost.error == "cannot resolve nowhere.example (no such name)" and lost.network
    assert lost_dns.asked == ["start.example", "nowhere.example"] and len(feed_server.hits("/rss")) == 1


def test_an_address_literal_is_checked_without_asking_dns(feed_server):
    """An IP address in the URL is checked as it is; DNS is not asked."""
    feed_server.routes["/rss"] = Route(body=rss("News", TWO))
    dns = StandInDNS({})
    with safe_client(LIMITS, resolve=dns) as http:
        assert fetch(http, feed_server.url("/rss"), None, None, LIMITS).ok
    assert dns.asked == []


def test_fetch_refuses_a_client_that_does_not_pin_to_the_same_rule():
    """An ordinary httpx.Client, or a safe client allowing private addresses under strict limits, is a caller bug."""
    with httpx.Client(follow_redirects=False) as plain, pytest.raises(TypeError, match="safe_client"):
        fetch(plain, "http://feeds.example/rss", None, None, LIMITS)
    with safe_client(LIMITS) as lenient, pytest.raises(TypeError, match="safe_client"):
        fetch(lenient, "http://feeds.example/rss", None, None, STRICT)


def test_slow_and_huge_responses_fail_the_poll_not_the_worker(feed_server, client):
    feed_server.routes["/slow"] = Route(body=rss("News", TWO), delay=3.0)
    feed_server.routes["/huge"] = Route(body=b"<rss>" + b"x" * 200_000 + b"</rss>")
    slow = fetch(client, feed_server.url("/slow"), None, None, FetchLimits(0.5, 100_000, "t", True))
    huge = fetch(client, feed_server.url("/huge"), None, None, LIMITS)
    assert slow.network and slow.error.startswith("timed out")
    assert huge.error == "response larger than 100000 bytes"


def test_nothing_listening_is_a_network_error(client):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = fetch(client, f"http://127.0.0.1:{port}/rss", None, None, LIMITS)
    assert result.status is None and result.network and result.error.startswith("cannot connect")


def test_retry_after_and_cache_hints_are_read(feed_server, client):
    feed_server.routes["/busy"] = Route(status=429, headers={"Retry-After": "120"})
    feed_server.routes["/cached"] = Route(body=rss("News", TWO), headers={"Cache-Control": "public, max-age=3600"})
    assert fetch(client, feed_server.url("/busy"), None, None, LIMITS).retry_after == 120
    assert fetch(client, feed_server.url("/cached"), None, None, LIMITS).cache_seconds == 3600


# -- the schedule (pure) --------------------------------------------------------------------------


def _after(result: FetchResult, errors: int = 0, hint: float | None = None, interval: float = 60):
    return next_poll(result, interval, errors, hint, POLICY, NOW, random.Random(1))


def test_failures_back_off_exponentially_up_to_the_cap_and_keep_probing():
    waits, errors = [], 0
    for _ in range(15):
        schedule = _after(FetchResult(status=500, error="HTTP 500"), errors)
        errors = schedule.error_count
        waits.append((schedule.next_poll - NOW).total_seconds())
        assert schedule.enabled
    assert waits[0] < waits[1] < waits[2] < waits[3]
    assert max(waits) <= POLICY.backoff_max and waits[-1] >= POLICY.backoff_max * 0.89
    recovered = _after(FetchResult(status=200, body=b"x"), errors)
    assert recovered.error_count == 0 and (recovered.next_poll - NOW).total_seconds() < 70


def test_gone_disables_and_retry_after_is_honoured():
    gone = _after(FetchResult(status=410, error="HTTP 410"))
    assert not gone.enabled and gone.next_poll is None
    busy = _after(FetchResult(status=503, error="HTTP 503", retry_after=600))
    assert busy.next_poll == NOW + timedelta(seconds=600) and busy.error_count == 1


def test_a_feed_hint_delays_the_next_poll_within_bounds():
    assert (_after(FetchResult(status=200, body=b"x"), hint=3600).next_poll - NOW).total_seconds() >= 3600 * 0.9
    bounded = FeedPolicy(default_interval=900, backoff_max=86400, hint_max=600)
    capped = next_poll(FetchResult(status=304), 60, 0, 86400, bounded, NOW, random.Random(1))
    assert (capped.next_poll - NOW).total_seconds() <= 600 * 1.1


# -- polls recorded in the store ------------------------------------------------------------------


def _poll(url: str, db_url: str, sent: list, now: datetime = NOW, resend_after: float = 600):
    with session_scope(db_url) as session, safe_client(LIMITS) as http:
        feed = subscriptions.find_feed(session, url)
        report = poll_feed(
            session, feed, http, LIMITS, POLICY, sent.append, now, keep_raw=True, resend_after=resend_after
        )
    return report


def _feed(db_url: str, url: str) -> Feed:
    with session_scope(db_url) as session:
        return subscriptions.find_feed(session, url)


def test_a_poll_queues_new_entries_once_and_changed_ones_again(feed_server, db_url):
    """New entries are queued; an unchanged feed queues nothing; an edited entry is queued again."""
    feed_server.routes["/rss"] = Route(body=rss("News", TWO), etag='"v1"')
    url = feed_server.url("/rss")
    with session_scope(db_url) as session:
        subscriptions.add_feed(session, url, 60)
    sent: list = []
    first = _poll(url, db_url, sent)
    assert first.new_entries == 2 and [raw.entry_id for raw in sent[0].inputs] == ["a1", "a2"]
    assert {raw.kind for raw in sent[0].inputs} == {"feed"} and sent[0].inputs[0].ref == url
    second = _poll(url, db_url, sent)
    assert second.status == 304 and len(sent) == 1
    feed_server.routes["/rss"] = Route(body=rss("News", [TWO[0], ("a2", "Second story", "Edited text.")]), etag='"v2"')
    third = _poll(url, db_url, sent)
    assert third.new_entries == 1 and [raw.entry_id for raw in sent[1].inputs] == ["a2"]
    # The edit is remembered: the same content served again (a new ETag, so read in full) is not news.
    feed_server.routes["/rss"] = Route(body=rss("News", [TWO[0], ("a2", "Second story", "Edited text.")]), etag='"v3"')
    fourth = _poll(url, db_url, sent)
    assert fourth.status == 200 and fourth.new_entries == 0 and len(sent) == 2
    feed = _feed(db_url, url)
    assert (feed.title, feed.last_status, feed.error_count, feed.etag) == ("News", 200, 0, '"v3"')


def test_an_entry_whose_message_never_landed_is_sent_again(feed_server, db_url):
    """Seen, but no origin holds it after the visibility timeout: the broker lost it; send again."""
    feed_server.routes["/rss"] = Route(body=rss("News", TWO[:1]))
    url = feed_server.url("/rss")
    with session_scope(db_url) as session:
        subscriptions.add_feed(session, url, 60)
    sent: list = []
    _poll(url, db_url, sent, now=datetime.now(UTC) - timedelta(hours=1))
    _poll(url, db_url, sent, resend_after=600, now=datetime.now(UTC))
    assert len(sent) == 2 and sent[0].inputs[0].arrival_id == sent[1].inputs[0].arrival_id
    # Sent again just now: not again before another visibility timeout has passed.
    _poll(url, db_url, sent, resend_after=600, now=datetime.now(UTC))
    assert len(sent) == 2


def test_a_poll_holds_no_store_transaction_while_the_feed_answers(feed_server, db_url):
    """The feed's row is read, then its transaction ends before the request goes out: a slow feed
    keeps no store session open (idle in transaction on PostgreSQL) while it answers."""
    feed_server.routes["/slow"] = Route(body=rss("News", TWO), delay=0.2)
    url = feed_server.url("/slow")
    with session_scope(db_url) as session:
        subscriptions.add_feed(session, url, 60)
    in_transaction_at_request: list[bool] = []
    with session_scope(db_url) as session, safe_client(LIMITS) as http:
        http.event_hooks["request"].append(lambda _request: in_transaction_at_request.append(session.in_transaction()))
        feed = subscriptions.find_feed(session, url)
        assert session.in_transaction()
        report = poll_feed(session, feed, http, LIMITS, POLICY, [].append, NOW, keep_raw=True, resend_after=600)
    assert in_transaction_at_request == [False]
    assert report.new_entries == 2 and _feed(db_url, url).last_status == 200


def test_failing_polls_are_counted_and_a_301_moves_the_url(feed_server, db_url):
    feed_server.routes["/broken"] = Route(status=500)
    feed_server.routes["/old"] = Route(status=301, headers={"Location": "/new"})
    feed_server.routes["/new"] = Route(body=rss("Moved", TWO))
    with session_scope(db_url) as session:
        subscriptions.add_feed(session, feed_server.url("/broken"), 60)
        subscriptions.add_feed(session, feed_server.url("/old"), 60)
    for _ in range(3):
        _poll(feed_server.url("/broken"), db_url, [])
    broken = _feed(db_url, feed_server.url("/broken"))
    assert (broken.error_count, broken.last_status, broken.last_error) == (3, 500, "HTTP 500")
    _poll(feed_server.url("/old"), db_url, [])
    assert _feed(db_url, feed_server.url("/old")) is None
    assert _feed(db_url, feed_server.url("/new")).title == "Moved"


def test_an_unusable_feed_body_is_a_failed_poll(feed_server, db_url):
    feed_server.routes["/junk"] = Route(body=b"<html><body>not a feed</body></html>", content_type="text/html")
    with session_scope(db_url) as session:
        subscriptions.add_feed(session, feed_server.url("/junk"), 60)
    report = _poll(feed_server.url("/junk"), db_url, [])
    assert report.error.startswith("unusable feed") and _feed(db_url, feed_server.url("/junk")).error_count == 1


def test_a_json_feed_is_read_by_content(feed_server, db_url):
    feed_server.routes["/feed.json"] = Route(
        body=b'{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": '
        b'[{"id": "j1", "title": "Json one", "content_text": "Body of the JSON entry."}]}',
        content_type="application/feed+json",
    )
    with session_scope(db_url) as session:
        subscriptions.add_feed(session, feed_server.url("/feed.json"), 60)
    sent: list = []
    assert _poll(feed_server.url("/feed.json"), db_url, sent).new_entries == 1
    assert sent[0].inputs[0].entry_id == "j1"


def test_due_feeds_are_claimed_once(db_url):
    """Two schedulers asking at once: each due feed goes to one of them."""
    with session_scope(db_url) as session:
        for number in range(5):
            subscriptions.add_feed(session, f"https://news{number}.example/rss", 60)
    now = datetime.now(UTC) + timedelta(seconds=1)
    with session_scope(db_url) as session:
        first = subscriptions.claim_due(session, now, lease_seconds=300)
    with session_scope(db_url) as session:
        second = subscriptions.claim_due(session, now, lease_seconds=300)
    assert sorted(first) == sorted(f.id for f in _all(db_url)) and second == []


def _all(db_url):
    with session_scope(db_url) as session:
        return subscriptions.all_feeds(session)


def test_opml_round_trips():
    outlines = [Outline("https://a.example/rss", "A & B news", "15m"), Outline("https://b.example/atom", None, "1h")]
    assert read_opml(write_opml(outlines).encode()) == outlines


def test_opml_nested_folders_are_read_and_hostile_files_refused():
    nested = (
        b"<opml version='2.0'><body><outline text='Folder'><outline text='X' xmlUrl='https://x.example/f'/>"
        b"</outline></body></opml>"
    )
    assert read_opml(nested) == [Outline("https://x.example/f", "X", None)]
    with pytest.raises(ServiceError, match="refused"):
        read_opml(b'<!DOCTYPE opml [<!ENTITY a "b">]><opml/>')
    with pytest.raises(ServiceError, match="not OPML"):
        read_opml(b"<rss/>")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400), ("45", 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds and parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "2x", "-5m", "0s", "m"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_clients_share_one_ssl_context_a_process_and_a_forked_child_makes_its_own():
    """Loading the CA certificates once a process, not once a fetch; never OpenSSL state across a fork."""
    first = shared_ssl_context()
    with safe_client(LIMITS) as one, safe_client(LIMITS) as two:
        assert one._transport._pool._ssl_context is two._transport._pool._ssl_context is first
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname  # still httpx's verifying default
    child = os.fork()
    if child == 0:
        os._exit(0 if shared_ssl_context() is not first else 1)
    assert os.waitpid(child, 0)[1] == 0
