"""The `ingest:events` stream (issue 12): every outcome appended as it is logged, read with consumer
groups at least once, and tailed with `ingest events`."""

from __future__ import annotations

import json

import redis

from shared.events import STREAM, event, publish, read
from shared.messages import Batch, RawInput
from tests.conftest import SAMPLE, wait_until
from tests.test_worker import json_lines, send, worker  # noqa: F401  (the fixture)


def _raw(payload: bytes, ref: str) -> RawInput:
    return RawInput.from_bytes(payload, kind="file", ref=ref)


def _events(url: str) -> list[dict[str, str]]:
    return [fields for _id, fields in read(redis.Redis.from_url(url), "0")]


def test_every_outcome_of_a_message_is_an_event_at_least_once(worker):  # noqa: F811
    """Stored, duplicate, clustered and failed: one event each, with what a consumer needs; a message
    delivered again emits them again."""
    sample = SAMPLE.read_bytes()
    near_copy = sample.replace(b"Speaking at a Russian", b"Addressing a Russian")
    batch = Batch(
        inputs=[
            _raw(sample, "one.txt"),
            _raw(b"%PDF-1.4", "two.pdf"),
            _raw(sample, "three.txt"),
            _raw(near_copy, "four.txt"),
        ]
    )
    send(worker, batch)
    url = worker.env["INGEST_REDIS_URL"]
    wait_until(lambda: len(_events(url)) >= 5, 60, "the events")
    found = {(one["event"], one.get("origin")): one for one in _events(url)}
    stored = found[("item.stored", "one.txt")]
    assert stored["title"] == "Putin seeks foreign volunteers to fight in Ukraine"
    assert (stored["source"], stored["cluster_id"], stored["kind"]) == ("The Chronicle", stored["item_id"], "file")
    assert found[("item.duplicate", "three.txt")]["item_id"] == stored["item_id"]
    assert found[("input.failed", "two.pdf")]["reason"] == "unsupported format"
    copy = found[("item.stored", "four.txt")]
    [clustered] = [one for one in _events(url) if one["event"] == "item.clustered"]
    assert (clustered["item_id"], clustered["cluster_id"], clustered["matched_item_id"]) == (
        copy["item_id"],
        stored["item_id"],
        stored["item_id"],
    )
    assert float(clustered["similarity"]) > 0.5
    assert len(_events(url)) == 5

    # At least once, never zero: the same message again (as after a worker died past its commit)
    # repeats its events, each with the arrival that tells a consumer it is a repeat.
    send(worker, batch)
    wait_until(lambda: sum(r["event"] == "item.redelivered" for r in json_lines(worker)) >= 3, 60, "the redelivery")
    wait_until(lambda: len(_events(url)) >= 9, 30, "the repeated events")
    repeated = _events(url)[5:]
    # item.clustered comes once, when the item is placed: a redelivery places nothing again.
    assert sorted(one["event"] for one in repeated) == ["input.failed", "item.duplicate", "item.stored", "item.stored"]
    assert {one["arrival"] for one in repeated} == {one["arrival"] for one in _events(url)[:5] if "arrival" in one}


def test_a_consumer_group_reads_every_event_once_across_a_restart(clean_redis):
    """A consumer that acknowledged some events, then stopped, resumes after them; what it read and
    did not acknowledge is still pending for it."""
    client = redis.Redis.from_url(clean_redis, decode_responses=True)
    publish(client, [event("item.stored", item_id=n) for n in range(1, 11)], maxlen=1000)
    client.xgroup_create(STREAM, "indexer", id="0")

    [(_stream, first)] = client.xreadgroup("indexer", "index-1", {STREAM: ">"}, count=4)
    client.xack(STREAM, "indexer", *[entry_id for entry_id, _fields in first[:3]])  # the 4th: crashed on it
    del client

    again = redis.Redis.from_url(clean_redis, decode_responses=True)  # the consumer, restarted
    [(_stream, pending)] = again.xreadgroup("indexer", "index-1", {STREAM: "0"})
    [(_stream, rest)] = again.xreadgroup("indexer", "index-1", {STREAM: ">"})
    seen = [fields["item_id"] for _id, fields in first[:3] + pending + rest]
    assert seen == [str(n) for n in range(1, 11)]


def test_the_stream_is_capped(clean_redis):
    client = redis.Redis.from_url(clean_redis)
    for start in range(0, 5000, 500):
        publish(client, [event("item.stored", item_id=n) for n in range(start, start + 500)], maxlen=1000)
    assert 1000 <= client.xlen(STREAM) < 2000


def test_ingest_events_prints_filters_and_resumes(deployment):
    """`ingest events`: one JSON line an event; `--event` takes a glob; `--from` resumes after an id."""
    client = redis.Redis.from_url(deployment.env["INGEST_REDIS_URL"])
    publish(client, [event("item.stored", item_id=1), event("input.failed", reason="r"), event("item.duplicate")], 100)
    everything = [json.loads(line) for line in deployment.run("events").stdout.splitlines()]
    assert [one["event"] for one in everything] == ["item.stored", "input.failed", "item.duplicate"]
    items = [json.loads(line)["event"] for line in deployment.run("events", "--event", "item.*").stdout.splitlines()]
    assert items == ["item.stored", "item.duplicate"]
    after = [
        json.loads(line)["event"]
        for line in deployment.run("events", "--from", everything[0]["id"]).stdout.splitlines()
    ]
    assert after == ["input.failed", "item.duplicate"]
