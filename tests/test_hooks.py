"""Webhooks (issue 12): events fanned out to each matching hook's capped queue, POSTed signed, at least
once and in order, with capped jittered backoff while a receiver fails; SSRF rules as for feeds."""

from __future__ import annotations

import json
import random

import pytest
import redis

from shared import hooks
from shared.events import STREAM, event, publish
from shared.feeds import FetchLimits, safe_client
from tests.conftest import wait_until
from tests.hookserver import HookReceiver

POLICY = hooks.DeliveryPolicy(backoff_base=1.0, backoff_max=60.0, allow_private=True, user_agent="ingest-test")


class Clock:
    """Time for deliver(), moved by the test past each backoff instead of waiting it out."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _http(allow_private: bool = True):
    return safe_client(FetchLimits(5.0, 0, "ingest-test", allow_private))


def _publish(client: redis.Redis, *names: str) -> None:
    publish(client, [event(name, item_id=number) for number, name in enumerate(names, 1)], 1000)


def test_globs_signatures_and_bodies():
    assert hooks.parse_globs(" item.* , feed.failed,") == ["item.*", "feed.failed"]
    assert hooks.parse_globs("") == ["*"]
    assert hooks.matches(["item.*"], "item.stored") and not hooks.matches(["item.*"], "input.failed")
    body = hooks.body_of("1700000000000-0", {"event": "item.stored", "item_id": "7", "title": "Café"})
    assert json.loads(body) == {
        "id": "1700000000000-0",
        "event": "item.stored",
        "data": {"item_id": "7", "title": "Café"},
    }
    assert hooks.delivery_id(3, body) == "3-1700000000000-0"
    signed = hooks.signature("s3cret", body)
    assert signed.startswith("sha256=") and len(signed) == 7 + 64
    assert hooks.verify("s3cret", body, signed)
    assert not hooks.verify("other", body, signed) and not hooks.verify("s3cret", body + b" ", signed)


def test_backoff_doubles_is_capped_and_jittered():
    rng = random.Random(7)
    for failures, full in ((1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (500, 60.0)):
        waits = [hooks.backoff_seconds(failures, 1.0, 60.0, rng) for _ in range(200)]
        assert all(full / 2 <= wait <= full for wait in waits), failures
        assert max(waits) - min(waits) > full / 4, "no jitter"


def test_fan_out_queues_each_hook_its_matching_events_and_caps_the_oldest(clean_redis):
    client = _client(clean_redis)
    _publish(client, "item.stored")
    assert hooks.fan_out(client, [], 100).events == 0  # no hooks: nothing read
    hooks.start_group_at_end(client)  # the first hook added: from now on
    items = hooks.HookRef(1, "http://127.0.0.1:1/a", "item.*", "k")
    feeds = hooks.HookRef(2, "http://127.0.0.1:1/b", "feed.failed", "k")
    _publish(client, "item.stored", "feed.failed", "item.duplicate", "input.failed")
    report = hooks.fan_out(client, [items, feeds], 100)
    assert (report.events, report.queued) == (4, {1: 2, 2: 1})
    queued = [json.loads(body)["event"] for body in client.lrange(hooks.queue_key(1), 0, -1)]
    assert queued == ["item.stored", "item.duplicate"]  # in order; the event before the hooks is not there
    assert hooks.fan_out(client, [items, feeds], 100).events == 0  # each event fanned out once

    _publish(client, *["item.stored"] * 5)
    report = hooks.fan_out(client, [items], 3)
    assert report.dropped == {1: 4}  # 2 waiting + 5 new, kept 3: the 4 oldest dropped, counted
    kept = [json.loads(body)["data"]["item_id"] for body in client.lrange(hooks.queue_key(1), 0, -1)]
    assert kept == ["3", "4", "5"]
    assert hooks.state(client, 1).dropped == 4 and hooks.state(client, 1).pending == 3


def test_a_fan_out_that_died_before_acknowledging_is_done_again(clean_redis):
    client = _client(clean_redis)
    hook = hooks.HookRef(1, "http://127.0.0.1:1/a", "*", "k")
    hooks.start_group(client)
    _publish(client, "item.stored", "item.stored")
    client.xreadgroup(hooks.GROUP, hooks.CONSUMER, {STREAM: ">"})  # read, then "died": never queued nor acked
    assert hooks.fan_out(client, [hook], 100).queued == {1: 2}
    assert client.xpending(STREAM, hooks.GROUP)["pending"] == 0


def test_a_receiver_failing_three_times_gets_every_event_signed_in_order(clean_redis):
    client, clock = _client(clean_redis), Clock()
    with HookReceiver(fail_first=3) as receiver, _http() as http:
        hook = hooks.HookRef(4, receiver.url, "*", "s3cret")
        hooks.start_group(client)
        _publish(client, "item.stored", "item.duplicate", "input.failed")
        hooks.fan_out(client, [hook], 100)
        waits = []
        for failures in (1, 2, 3):
            report = hooks.deliver(client, hook, http, POLICY, clock)
            assert (report.delivered, report.failures, report.error) == (0, failures, "HTTP 500")
            assert hooks.state(client, 4).failing and hooks.state(client, 4).pending == 3
            assert hooks.deliver(client, hook, http, POLICY, clock).skipped == "waiting"  # backing off
            waits.append(report.retry_in)
            clock.now += report.retry_in
        assert 0.5 <= waits[0] <= 1 and 1 <= waits[1] <= 2 and 2 <= waits[2] <= 4
        report = hooks.deliver(client, hook, http, POLICY, clock)
        assert (report.delivered, report.error, report.recovered) == (3, None, True)
    assert [one.payload["event"] for one in receiver.accepted()] == ["item.stored", "item.duplicate", "input.failed"]
    for one in receiver.received:
        assert hooks.verify("s3cret", one.body, one.headers["X-Ingest-Signature"])
        assert one.headers["X-Ingest-Delivery"] == f"4-{one.payload['id']}"
        assert one.headers["X-Ingest-Event"] == one.payload["event"]
    first_event_tries = [one for one in receiver.received if one.payload["event"] == "item.stored"]
    assert len(first_event_tries) == 4 and len({one.headers["X-Ingest-Delivery"] for one in first_event_tries}) == 1
    current = hooks.state(client, 4)
    assert (current.failing, current.pending, current.delivered, current.last_error) == (False, 0, 3, "HTTP 500")


def test_hook_urls_obey_the_feed_address_rules_and_redirects_are_not_followed(clean_redis):
    client, clock = _client(clean_redis), Clock()
    hooks.start_group(client)
    with HookReceiver() as receiver, _http(allow_private=False) as http:
        hook = hooks.HookRef(5, receiver.url, "*", "k")
        _publish(client, "item.stored")
        hooks.fan_out(client, [hook], 100)
        strict = hooks.DeliveryPolicy(1.0, 60.0, allow_private=False, user_agent="ingest-test")
        report = hooks.deliver(client, hook, http, strict, clock)
        assert "private, loopback or link-local" in report.error and receiver.received == []
        assert hooks.state(client, 5).pending == 1  # kept for when the rule allows it
    with HookReceiver(redirect_to="http://127.0.0.1:1/elsewhere") as receiver, _http() as http:
        hook = hooks.HookRef(5, receiver.url, "*", "k")
        clock.now += 3600
        report = hooks.deliver(client, hook, http, POLICY, clock)
        assert report.error == "HTTP 302: a webhook's redirects are not followed"
        assert len(receiver.received) == 1


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("ftp://example.com/x", "not an http or https URL"),
        ("file:///etc/passwd", "not an http or https URL"),
        ("http://example.com:abc/", "not a usable URL"),
        ("http://example.com:99999/", "not a usable URL"),
    ],
)
def test_only_usable_http_hooks_are_taken(url, refusal):
    from shared.errors import ServiceError
    from shared.subscriptions import checked_hook_url

    with pytest.raises(ServiceError, match=refusal):
        checked_hook_url(url)


def test_hook_urls_are_shown_without_their_tokens():
    assert hooks.shown_url("https://u:pw@in.example/h?token=abc&v=2") == "https://u:***@in.example/h?token=***&v=***"
    assert hooks.shown_url("http://127.0.0.1:9/gone") == "http://127.0.0.1:9/gone"


@pytest.mark.e2e
def test_ingest_up_delivers_every_stored_item_to_a_hook_that_failed_three_times(deployment):
    """The whole path: `ingest hooks add`, files dropped, a receiver answering 500 three times: every
    item.stored reaches it signed; a hook that never answers shows as failing in `ingest status`."""
    from tests.test_e2e import drop_articles

    deployment.env |= {"INGEST_FEEDS_ALLOW_PRIVATE": "true", "INGEST_HOOKS_BACKOFF_BASE_SECONDS": "0.3"}
    with HookReceiver(fail_first=3) as receiver:
        added = deployment.run("hooks", "add", receiver.url, "--events", "item.stored", "--secret", "s3cret")
        assert added.stdout.strip() == f"added hook 1: {receiver.url} (events item.stored)"
        dead = deployment.run("hooks", "add", "http://127.0.0.1:9/gone").stdout
        assert dead.splitlines()[1].startswith("secret: ")  # made, and shown once
        deployment.start("--concurrency", "2")
        drop_articles(deployment.seeds, 12)
        deployment.drain()

        def stored_ids() -> set[str]:
            return {one.payload["data"]["item_id"] for one in receiver.accepted()}

        wait_until(lambda: len(stored_ids()) == 12, 60, "every item.stored at the hook")
        assert len(receiver.received) - len(receiver.accepted()) == 3
        for one in receiver.received:
            assert one.payload["event"] == "item.stored"
            assert hooks.verify("s3cret", one.body, one.headers["X-Ingest-Signature"])
        items = {str(item["id"]) for item in deployment.export()}
        assert stored_ids() == items

        client = _client(deployment.env["INGEST_REDIS_URL"])
        wait_until(lambda: hooks.state(client, 2).failures >= 2, 30, "the dead hook to fail twice")
        live, gone = deployment.status()["hooks"]
        assert (live["failing"], live["pending"], live["delivered"]) == (False, 0, 12)
        assert gone["failing"] and gone["pending"] >= 12 and "ConnectError" in gone["last_error"]  # every event, kept
        text = deployment.run("status").stdout
        assert "hooks       2  (1 failing)" in text and "failing x" in text

        deployment.run("hooks", "remove", "http://127.0.0.1:9/gone")
        missing = deployment.run("hooks", "remove", "http://127.0.0.1:9/gone", check=False)
        assert (missing.returncode, missing.stderr.strip()) == (1, "error: no such hook: http://127.0.0.1:9/gone")
        assert [hook["url"] for hook in json.loads(deployment.run("hooks", "list", "--json").stdout)] == [receiver.url]


def test_the_first_hook_after_none_starts_from_its_own_moment(clean_redis):
    """Removing the last hook drops the group; the next first hook is not sent what came meanwhile."""
    client = _client(clean_redis)
    hook = hooks.HookRef(1, "http://127.0.0.1:1/a", "*", "k")
    hooks.start_group_at_end(client)
    _publish(client, "item.stored")
    hooks.stop_group(client)  # the last hook removed
    assert client.xinfo_groups(STREAM) == []
    _publish(client, "item.stored", "item.stored")  # while nobody listens
    hooks.start_group_at_end(client)  # a first hook again
    _publish(client, "item.duplicate")
    assert hooks.fan_out(client, [hook], 100).queued == {1: 1}
