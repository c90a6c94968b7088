"""Feeds as a user runs them: `ingest up`, `ingest feeds add … --every 2s`, a real feed server on loopback."""

from __future__ import annotations

import json
import signal
from datetime import datetime

import httpx
import pytest

from tests.conftest import wait_until
from tests.feedserver import Route, rss
from worker.broker import free_port

pytestmark = pytest.mark.e2e

ENTRIES = [
    ("e1", "Harbour reopens", "The harbour reopened after the storm."),
    ("e2", "Bridge closed", "The old bridge is closed for repairs until May."),
]


@pytest.fixture
def site(deployment):
    deployment.env |= {"INGEST_FEEDS_ALLOW_PRIVATE": "true", "INGEST_FEEDS_TICK_SECONDS": "0.25"}
    return deployment


def feed_by_url(site, url: str) -> dict | None:
    return next((feed for feed in site.status()["feeds"] if feed["url"] == url), None)


def test_a_subscribed_feed_is_polled_conditionally_and_stores_each_entry_once(site, feed_server):
    """Entries land within an interval; later polls are answered 304; ten polls store nothing twice;
    an entry added to the feed lands at the next poll."""
    feed_server.routes["/rss.xml"] = Route(body=rss("Harbour News", ENTRIES), etag='"one"')
    url = feed_server.url("/rss.xml")
    metrics_port = free_port()
    site.env["INGEST_METRICS_PORT"] = str(metrics_port)
    site.start("--concurrency", "2")
    assert site.run("feeds", "add", url, "--every", "0.5s").stdout.startswith("added")
    wait_until(lambda: site.count_items() == 2, 15, "the feed's entries")
    wait_until(lambda: len(feed_server.hits("/rss.xml")) >= 10, 30, "ten polls")
    hits = feed_server.hits("/rss.xml")
    assert hits[0].status == 200 and hits[1].headers.get("If-None-Match") == '"one"' and hits[1].status == 304
    assert {hit.status for hit in hits[1:]} == {304}
    feed_server.routes["/rss.xml"] = Route(
        body=rss("Harbour News", [*ENTRIES, ("e3", "Ferry late", "The ferry ran late.")]), etag='"two"'
    )
    wait_until(lambda: site.count_items() == 3, 15, "the new entry")
    site.drain()
    items = site.export()
    assert len(items) == 3 and all(len(item["origins"]) == 1 for item in items)
    origin = next(item for item in items if item["title"] == "Ferry late")["origins"][0]
    assert origin == {**origin, "kind": "feed", "ref": url, "entry_id": "e3"}
    feed = feed_by_url(site, url)
    assert (feed["last_status"], feed["error_count"], feed["title"]) in (
        (200, 0, "Harbour News"),
        (304, 0, "Harbour News"),
    )
    assert '"feed.polled"' in site.log_text()
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    assert 'ingest_feed_polls_total{role="up",status="200"}' in metrics
    assert 'ingest_feed_polls_total{role="up",status="304"}' in metrics


def test_a_failing_feed_backs_off_while_others_keep_their_schedule_and_301_moves(site, feed_server):
    feed_server.routes["/broken.xml"] = Route(status=500)
    feed_server.routes["/good.xml"] = Route(body=rss("Good", ENTRIES[:1]))
    feed_server.routes["/moved.xml"] = Route(status=301, headers={"Location": "/new-home.xml"})
    feed_server.routes["/new-home.xml"] = Route(body=rss("Moved", ENTRIES[1:]))
    site.start("--concurrency", "2")
    for path in ("/broken.xml", "/good.xml", "/moved.xml"):
        site.run("feeds", "add", feed_server.url(path), "--every", "0.5s")
    broken_url = feed_server.url("/broken.xml")
    wait_until(
        lambda: site.query("SELECT 1 FROM feeds WHERE url = ? AND error_count >= 3", broken_url),
        30,
        "three failed polls",
    )
    broken = feed_by_url(site, broken_url)
    assert broken["last_status"] == 500 and not broken["healthy"] and broken["enabled"]
    next_wait = datetime.fromisoformat(broken["next_poll"]) - datetime.fromisoformat(broken["last_polled"])
    assert next_wait.total_seconds() >= 0.5 * 2**3 * 0.9, "the wait did not grow with the failures"
    good_before = len(feed_server.hits("/good.xml"))
    wait_until(lambda: len(feed_server.hits("/good.xml")) >= good_before + 3, 15, "the good feed to keep polling")
    assert feed_by_url(site, feed_server.url("/moved.xml")) is None
    assert feed_by_url(site, feed_server.url("/new-home.xml"))["title"] == "Moved"
    text = site.run("status").stdout
    assert "failing x" in text and "HTTP 500" in text


def test_opml_import_then_export_round_trips(site, tmp_path):
    opml = tmp_path / "subscriptions.opml"
    opml.write_text(
        "<?xml version='1.0'?><opml version='2.0'><head><title>mine</title></head><body>"
        "<outline text='News'><outline text='World' title='World' type='rss' xmlUrl='https://world.example/rss'/>"
        "<outline text='Tech' type='rss' xmlUrl='https://tech.example/atom.xml' ingestEvery='1h'/></outline>"
        "</body></opml>"
    )
    assert site.run("feeds", "import", str(opml)).stdout.strip() == "imported 2 feeds (2 new)"
    exported = tmp_path / "out.opml"
    exported.write_text(site.run("feeds", "export").stdout)
    assert site.run("feeds", "import", str(exported)).stdout.strip() == "imported 2 feeds (0 new)"
    listed = json.loads(site.run("feeds", "list", "--json").stdout)
    assert [(f["url"], f["title"], f["every_seconds"]) for f in listed] == [
        ("https://world.example/rss", "World", 900.0),
        ("https://tech.example/atom.xml", "Tech", 3600.0),
    ]
    assert site.run("feeds", "remove", "https://world.example/rss").returncode == 0
    assert site.run("feeds", "remove", "https://world.example/rss", check=False).stderr.startswith(
        "error: not subscribed"
    )


def test_a_second_scheduler_stands_by(site):
    """Two `ingest beat`: one leads, the other waits; when the leader stops, the other takes over."""
    first = site.spawn("beat")
    wait_until(lambda: '"beat.leading"' in site.log_text(), 30, "the first scheduler to lead")
    second = site.spawn("beat")
    wait_until(lambda: '"beat.standby"' in site.log_text(), 30, "the second to stand by")
    assert site.log_text().count('"beat.leading"') == 1
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    wait_until(lambda: site.log_text().count('"beat.leading"') == 2, 60, "the second to take over")
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
