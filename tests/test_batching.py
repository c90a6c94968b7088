"""Many inputs in one message: one transaction, one call to the index, and every guarantee kept."""

from __future__ import annotations

import json
from datetime import datetime

import redis

from shared import store
from shared.db import session_scope
from shared.dedup import NearDuplicateIndex, Placing
from shared.messages import Batch, RawInput
from shared.pipeline import Context, Prepared, place_all, prepare, store_all, store_batch
from shared.settings import Settings
from tests.conftest import SAMPLE, wait_until
from tests.corpus import versions
from tests.test_worker import json_lines, send, worker  # noqa: F401  (the fixture)

CONTEXT = Context.from_settings(Settings())


def article(number: int) -> bytes:
    return (
        f"Harbour plan number {number} approved\n\nCoast Herald\n\n"
        f"The harbour board approved plan {number} after a long meeting about berths and cranes.\n"
    ).encode()


def raw(payload: bytes, ref: str) -> RawInput:
    return RawInput.from_bytes(payload, kind="file", ref=ref)


def outcomes_of(db_url: str, inputs: list[RawInput]) -> list[list[str]]:
    with session_scope(db_url) as session:
        per_input = store_all(session, [prepare(one, CONTEXT) for one in inputs], keep_raw=True)
    return [[outcome.outcome for outcome in outcomes] for outcomes in per_input]


def test_a_bad_input_in_a_batch_fails_alone_with_its_reason(db_url):
    """An unsupported file between two good ones: one failure with its reason, two items."""
    inputs = [raw(article(1), "a.txt"), raw(b"%PDF-1.4", "b.pdf"), raw(article(2), "c.txt")]
    assert outcomes_of(db_url, inputs) == [["stored"], ["failed"], ["stored"]]
    with session_scope(db_url) as session:
        counts = store.counts(session)
        assert (counts["items"], counts["failed"]) == (2, 1)
        assert [f["reason"] for f in store.failure_records(session)] == ["unsupported format"]


def test_a_duplicate_within_the_same_batch_is_one_item_with_two_origins(db_url):
    """The same content twice in one message: stored once, the second arrival a duplicate."""
    inputs = [raw(article(1), "a.txt"), raw(article(1).replace(b"\n", b"\r\n"), "copy/a.txt")]
    assert outcomes_of(db_url, inputs) == [["stored"], ["duplicate"]]
    with session_scope(db_url) as session:
        [record] = store.export_records(session)
    assert sorted(origin["ref"] for origin in record["origins"]) == ["a.txt", "copy/a.txt"]


def test_a_batch_delivered_twice_writes_nothing_new(db_url):
    """The same message again: every outcome redelivered, the counts unchanged."""
    inputs = [raw(article(1), "a.txt"), raw(article(1), "b.txt"), raw(b"", "empty.txt"), raw(article(2), "c.txt")]
    assert outcomes_of(db_url, inputs) == [["stored"], ["duplicate"], ["failed"], ["stored"]]
    with session_scope(db_url) as session:
        before = store.counts(session)
    assert outcomes_of(db_url, inputs) == [["redelivered"]] * 4
    with session_scope(db_url) as session:
        assert store.counts(session) == before == {**before, "items": 2, "origins": 3, "failed": 1}


def test_an_input_the_database_refuses_fails_alone(db_url):
    """A write the database rejects sinks neither the batch nor the input: the others are stored and
    the refused input becomes a failure with the database's reason."""
    good = [prepare(raw(article(n), f"{n}.txt"), CONTEXT) for n in (1, 2)]
    bad_input = prepare(raw(article(3), "3.txt"), CONTEXT)
    # A naive timestamp is refused by the store's UTC column: a stand-in for any value a column rejects.
    [write] = bad_input.writes
    naive = store.ItemWrite(write.item.but(published_at=datetime(2022, 3, 11)), "sha256:ff", "text", write.arrival)
    outcomes = store_batch(db_url, [good[0], Prepared(bad_input.raw, [naive]), good[1]], keep_raw=True)
    assert [[o.outcome for o in per_input] for per_input in outcomes] == [["stored"], ["failed"], ["stored"]]
    assert outcomes[1][0].reason.startswith("cannot be stored: ")
    with session_scope(db_url) as session:
        assert (store.counts(session)["items"], store.counts(session)["failed"]) == (2, 1)


def test_two_near_copies_in_one_call_share_a_cluster(clean_redis):
    """Placed in one atomic call, the second near-copy sees the first; a different story stays apart."""
    index = NearDuplicateIndex(redis.Redis.from_url(clean_redis), 0.4)
    original, copy, other = versions(edits=["sentence"])[:3]  # story 1, its near-copy, story 2
    placements = index.place([Placing(1, original.body), Placing(2, copy.body), Placing(3, other.body)])
    assert [p.cluster_id for p in placements] == [1, 1, 3]
    assert placements[1].matched_item_id == 1 and placements[0].matched_item_id is None
    assert [p.cluster_id for p in index.place([Placing(2, copy.body), Placing(1, original.body)])] == [1, 1]


def test_placing_a_batch_twice_changes_no_cluster(db_url, clean_redis):
    """place_all sets each item's cluster once; a second call (a redelivery) leaves them as they are."""
    original, copy = versions(edits=["dropped"])[:2]
    inputs = [raw(f"{v.title}\n\n{v.body}\n".encode(), f"{n}.txt") for n, v in enumerate((original, copy))]
    outcomes_of(db_url, inputs)
    index = NearDuplicateIndex(redis.Redis.from_url(clean_redis), 0.4)
    with session_scope(db_url) as session:
        first = place_all(session, index, [1, 2])
    with session_scope(db_url) as session:
        assert place_all(session, index, [1, 2]) == {}
        records = {r["id"]: r["cluster_id"] for r in store.export_records(session)}
    assert {item_id: p.cluster_id for item_id, p in first.items()} == records == {1: 1, 2: 1}


def test_a_real_worker_stores_a_mixed_batch_once_even_when_delivered_twice(worker):  # noqa: F811
    """Good, bad and duplicate inputs in one message, sent twice: two items, one failure, one duplicate."""
    sample = SAMPLE.read_bytes()
    batch = Batch(
        inputs=[raw(sample, "one.txt"), raw(b"%PDF-1.4", "two.pdf"), raw(sample, "three.txt"), raw(article(7), "x.txt")]
    )
    send(worker, batch)
    send(worker, batch)
    wait_until(lambda: sum(r["event"] == "item.redelivered" for r in json_lines(worker)) >= 3, 60, "the redelivery")
    status = worker.status()
    assert (status["items"], status["origins"], status["duplicates"], status["failed"]) == (2, 3, 1, 1)
    failures = json.loads(worker.run("failures", "--json").stdout)
    assert [(f["ref"], f["reason"]) for f in failures] == [("two.pdf", "unsupported format")]
    stored = [r for r in json_lines(worker) if r["event"] == "item.stored"]
    assert len({r["task_id"] for r in stored}) == 1, "one message, one task"


def test_packs_are_bounded_by_count_and_bytes_and_a_large_input_goes_alone():
    from shared.messages import packs

    sizes = [10, 10, 10, 50, 10, 200, 10]
    grouped = list(packs(sizes, lambda size: size, max_count=2, max_bytes=60))
    assert grouped == [[10, 10], [10, 50], [10], [200], [10]]
    assert list(packs([], len, max_count=100, max_bytes=1)) == []
    assert [len(pack) for pack in packs(range(250), lambda _n: 1, max_count=100, max_bytes=10**9)] == [100, 100, 50]
