"""Near-duplicate clustering on the labelled corpus, against the real Redis index."""

from __future__ import annotations

import itertools
import random

import pytest
import redis

from shared.dedup import NearDuplicateIndex, Placing, ensure_compact_hashes
from shared.fingerprint import content_hash
from shared.settings import Settings
from tests.corpus import CORPUS, versions


def cluster_all(url: str, items, threshold: float | None = None, seed: int = 3) -> dict[int, int]:
    """Claim every item in a shuffled order; returns position -> cluster id."""
    client = redis.Redis.from_url(url)
    ensure_compact_hashes(client)
    index = NearDuplicateIndex(client, threshold or Settings().near_duplicate_threshold)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return {position: index.claim(position + 1, items[position].body).cluster_id for position in order}


def pair_scores(items, clusters: dict[int, int]) -> tuple[float, float, list]:
    true_positive = false_positive = false_negative = 0
    wrong = []
    for a, b in itertools.combinations(range(len(items)), 2):
        same_story = items[a].story == items[b].story
        same_cluster = clusters[a] == clusters[b]
        true_positive += same_story and same_cluster
        false_positive += same_cluster and not same_story
        false_negative += same_story and not same_cluster
        if same_story != same_cluster:
            wrong.append((items[a].story, items[a].edit, items[b].story, items[b].edit))
    precision = true_positive / ((true_positive + false_positive) or 1)
    recall = true_positive / ((true_positive + false_negative) or 1)
    return precision, recall, wrong


def distinct(items):
    """Exact copies are one item: keep the first version of each content."""
    seen, kept = set(), []
    for item in items:
        digest = content_hash(item.title, item.body)
        if digest not in seen:
            seen.add(digest)
            kept.append(item)
    return kept


def test_labelled_corpus_precision_and_recall(clean_redis):
    """Precision >= 0.99 and recall >= 0.97 over cluster membership, whatever the arrival order."""
    items = distinct(versions())
    assert len(items) > 80
    for seed in (1, 2, 3):
        precision, recall, wrong = pair_scores(items, cluster_all(clean_redis, items, seed=seed))
        redis.Redis.from_url(clean_redis).flushall()
        assert precision >= 0.99 and recall >= 0.97, (precision, recall, wrong[:10])


def test_no_hard_negative_shares_a_cluster(clean_redis):
    """Different stories on the same topic, sharing many words, never share a cluster."""
    items = distinct(versions())
    clusters = cluster_all(clean_redis, items)
    by_topic: dict[str, set] = {}
    for position, item in enumerate(items):
        by_topic.setdefault(item.topic, set()).add((item.story, clusters[position]))
    for topic, pairs in by_topic.items():
        stories_per_cluster: dict[int, set] = {}
        for story, cluster in pairs:
            stories_per_cluster.setdefault(cluster, set()).add(story)
        assert all(len(stories) == 1 for stories in stories_per_cluster.values()), topic


def test_exact_copies_are_one_content():
    """White space and line ends do not make a new item (the store collapses these before clustering)."""
    story = CORPUS["stories"][0]
    body = "\n\n".join(story["paragraphs"])
    assert content_hash(story["title"], body) == content_hash(story["title"], body.replace("\n\n", "\r\n\r\n  "))


def test_a_claim_is_idempotent_and_says_why(clean_redis):
    """Claiming an item twice changes nothing; a clustered item names its match and the similarity."""
    client = redis.Redis.from_url(clean_redis)
    index = NearDuplicateIndex(client, 0.5)
    original, copy = versions(edits=["sentence"])[:2]
    first = index.claim(10, original.body)
    second = index.claim(11, copy.body)
    assert (first.cluster_id, first.matched_item_id) == (10, None)
    assert (second.cluster_id, second.matched_item_id) == (10, 10) and 0.5 <= second.similarity <= 1
    assert index.claim(11, copy.body).cluster_id == 10


def test_restore_keeps_the_cluster_identity(clean_redis):
    """After the index is lost, restoring from the store keeps every cluster id."""
    client = redis.Redis.from_url(clean_redis)
    index = NearDuplicateIndex(client, 0.5)
    original, copy, third = versions(edits=["sentence", "dropped"])[:3]
    placed = {item_id: index.claim(item_id, item.body).cluster_id for item_id, item in ((20, original), (21, copy))}
    index.clear()
    for item_id, item in ((20, original), (21, copy)):
        index.restore(item_id, item.body, placed[item_id])
    assert index.claim(22, third.body).cluster_id == placed[20]


def _stored(db_url: str, version, name: str) -> int:
    """A near-copy stored through the pipeline as a worker stores it; its item id."""
    from shared.db import session_scope
    from shared.messages import RawInput
    from shared.pipeline import Context, process

    raw = RawInput.from_bytes(f"{version.title}\n\n{version.body}\n".encode(), kind="file", ref=name)
    with session_scope(db_url) as session:
        [outcome] = process(session, raw, Context.from_settings(Settings(_env_file=None)))
    return outcome.item_id


def _clusters(db_url: str) -> dict[int, int | None]:
    from sqlmodel import select

    from shared.db import session_scope
    from shared.models import Item

    with session_scope(db_url) as session:
        return dict(session.execute(select(Item.id, Item.cluster_id)).all())


def test_a_rebuild_while_workers_place_items_splits_no_cluster(db_url, clean_redis):
    """`ingest reindex` with workers running: an item stored while the index is rebuilt waits unplaced,
    then joins its story's cluster in the finished index; every item placed, every cluster kept."""
    from shared.pipeline import place_all, rebuild_index

    client = redis.Redis.from_url(clean_redis)
    index = NearDuplicateIndex(client, Settings().near_duplicate_threshold)
    story = versions(edits=["sentence", "outlet", "dropped", "added"])[:5]
    first = [_stored(db_url, version, f"{n}.txt") for n, version in enumerate(story[:3])]
    from shared.db import session_scope

    with session_scope(db_url) as session:
        place_all(session, index, first)
    before = _clusters(db_url)
    assert len(set(before.values())) == 1
    index.clear()  # Redis lost the index: what `ingest reindex` is for

    during: list[int] = []

    def a_worker_stores_one_meanwhile(_done: int) -> None:
        if not during:  # while the fresh index is being filled, before it goes live
            during.append(_stored(db_url, story[3], "during.txt"))
            with session_scope(db_url) as session:
                assert place_all(session, index, during) == {}  # deferred, not placed against half an index

    rebuilt = rebuild_index(db_url, index, a_worker_stores_one_meanwhile)
    assert (rebuilt.restored, rebuilt.placed) == (3, 1)
    after_id = _stored(db_url, story[4], "after.txt")
    with session_scope(db_url) as session:
        place_all(session, index, [after_id])
    clusters = _clusters(db_url)
    assert {item_id: clusters[item_id] for item_id in before} == before
    assert set(clusters.values()) == set(before.values())  # one cluster: nothing split, nothing unplaced
    assert client.get("nd:building") is None and client.get("nd:live").startswith(b"nd:v2g")
    assert not client.keys("nd:v2:*")  # the old index is gone


def test_a_second_rebuild_is_refused_and_a_crashed_one_lets_go(clean_redis):
    """One rebuild at a time; a rebuild that stops renewing its hold releases placing, and the next
    rebuild drops what it left."""
    from shared.dedup import BUILDING_KEY, RebuildError
    from tests.conftest import wait_until

    client = redis.Redis.from_url(clean_redis)
    index = NearDuplicateIndex(client, 0.5)
    original, copy = versions(edits=["sentence"])[:2]
    crashed = index.begin_rebuild(hold_seconds=1)
    with pytest.raises(RebuildError, match="another `ingest reindex`"):
        index.begin_rebuild(hold_seconds=60)
    index.place([Placing(1, original.body, 1)], into="building")  # what the crashed rebuild had filled
    assert index.claim(2, copy.body) is None  # deferred while it holds the index
    wait_until(lambda: not client.exists(BUILDING_KEY), 10, "the crashed rebuild's hold to expire")
    assert index.claim(2, copy.body).cluster_id == 2  # placing resumed, in the live index
    with pytest.raises(RebuildError, match="expired"):
        index.finish_rebuild(crashed)
    fresh = index.begin_rebuild(hold_seconds=60)
    assert not client.keys(f"{crashed}*")
    index.finish_rebuild(fresh)
    assert client.get("nd:live") == fresh.encode()


def test_an_index_in_the_old_layout_serves_until_upgraded_and_keeps_every_cluster(db_url, clean_redis):
    """An index written by version 1 (2^16 bucket hashes under `nd:`, `nd:live` unset) keeps placing
    near-copies in their clusters; `upgrade_index` rebuilds it in layout 2 with every cluster id
    kept, and a worker that still thinks the old layout learns the new one and places correctly."""
    from shared.db import session_scope
    from shared.dedup import LIVE_KEY
    from shared.pipeline import place_all, upgrade_index

    client = redis.Redis.from_url(clean_redis)
    client.set(LIVE_KEY, "nd:")  # version 1's layout, written as version 1 wrote it
    written_by_version_1 = NearDuplicateIndex(client, Settings().near_duplicate_threshold)
    written_by_version_1.layout = 1
    story = versions(edits=["sentence", "outlet", "dropped", "added"])[:5]
    other = versions(edits=["sentence"])[-1]
    stored = [_stored(db_url, version, f"{n}.txt") for n, version in enumerate([*story[:3], other])]
    with session_scope(db_url) as session:
        place_all(session, written_by_version_1, stored)
    client.delete(LIVE_KEY)
    assert client.keys("nd:b:*") and client.keys("nd:i:*")

    index = NearDuplicateIndex(client, Settings().near_duplicate_threshold)  # the new version starting
    assert index.live_layout() == 1
    later = _stored(db_url, story[3], "3.txt")
    with session_scope(db_url) as session:
        assert place_all(session, index, [later])[later].cluster_id == stored[0]  # learned layout 1
    before = _clusters(db_url)

    assert upgrade_index(db_url, index, lambda _done: None).restored == 5
    assert index.live_layout() == 2 and not client.keys("nd:b:*") and not client.keys("nd:i:*")
    assert upgrade_index(db_url, index, lambda _done: None) is None  # current: nothing to do
    last = _stored(db_url, story[4], "4.txt")
    with session_scope(db_url) as session:
        assert place_all(session, written_by_version_1, [last])[last].cluster_id == stored[0]
    assert written_by_version_1.layout == 2
    assert {item_id: cluster for item_id, cluster in _clusters(db_url).items() if item_id != last} == before
