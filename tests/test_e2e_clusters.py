"""Near-duplicate clusters as a user meets them: many workers, `ingest clusters`, `ingest reindex`."""

from __future__ import annotations

import json
import random

import pytest
import redis

from tests.conftest import wait_until
from tests.corpus import synthetic_stories, versions

pytestmark = pytest.mark.e2e


def drop(site, items, names) -> None:
    for item, name in zip(items, names):
        temporary = site.seeds / f"{name}.tmp"
        temporary.write_text(f"{item.title}\n\n{item.body}\n")
        temporary.rename(site.seeds / name)


def test_four_workers_and_a_thousand_near_copies_make_exactly_one_cluster_per_story(deployment):
    """1,000 near-copies of 100 stories in random order, four worker processes: exactly 100 clusters."""
    stories = synthetic_stories(100)
    edits = [
        "sentence",
        "added",
        "dropped",
        "outlet",
        "sentence+outlet",
        "added+sentence",
        "sentence",
        "dropped+outlet",
        "added+outlet",
        "sentence+dropped",
    ]
    pool = [" ".join(s["paragraphs"][0].split()[:20]) + "." for s in synthetic_stories(20, seed=99)]
    copies = [v for v in versions(stories, edits=edits, pool=pool) if v.edit != "original"]
    assert len(copies) == 1000
    random.Random(8).shuffle(copies)
    deployment.start("--concurrency", "4")
    drop(deployment, copies, [f"copy-{n:04d}.txt" for n in range(len(copies))])
    deployment.drain(timeout=240)
    status = deployment.status()
    assert status["clusters"] == 100, status
    items = deployment.export()
    by_story = {}
    for item in items:
        story = item["title"].split(" ")[1]
        by_story.setdefault(story, set()).add(item["cluster_id"])
    assert len(by_story) == 100 and all(len(ids) == 1 for ids in by_story.values())


def test_clusters_are_listed_explained_and_survive_a_reindex(deployment):
    """`ingest clusters` lists groups with titles and sources; the log says why an item joined; after
    Redis loses the index, `ingest reindex` rebuilds it and every cluster keeps its id."""
    story = versions(edits=["sentence", "outlet", "dropped"])
    first_story, other_story = story[:3], versions(edits=["added"])[2:4]
    deployment.start("--concurrency", "2")
    drop(deployment, first_story + other_story, ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"])
    deployment.drain()
    groups = json.loads(deployment.run("clusters", "--json").stdout)
    assert sorted(group["size"] for group in groups) == [2, 3]
    joined = [item for group in groups for item in group["items"] if item["matched_item_id"]]
    assert len(joined) == 3 and all(0.4 <= item["similarity"] <= 1 for item in joined)
    stored = [
        json.loads(line)
        for line in deployment.log_text().splitlines()
        if line.startswith("{") and '"item.stored"' in line
    ]
    assert sum(1 for line in stored if line.get("matched_item_id")) == 3
    before = {item["id"]: item["cluster_id"] for item in deployment.export()}

    client = redis.Redis.from_url(deployment.env["INGEST_REDIS_URL"])
    client.delete(*client.keys("nd:*"))
    result = deployment.run("reindex")
    assert result.stdout.strip().startswith("reindexed 5 items")
    assert {item["id"]: item["cluster_id"] for item in deployment.export()} == before
    drop(deployment, [story[3]], ["f.txt"])
    deployment.drain()
    items = deployment.export()
    [new] = [item for item in items if item["id"] not in before]
    first_cluster = {item["cluster_id"] for item in items if item["title"] == story[0].title and item["id"] in before}
    assert first_cluster == {new["cluster_id"]}
    assert deployment.status()["clusters"] == 2


def _as_version_1_left_it(deployment) -> None:
    """The index rewritten as version 1 wrote it: 2^16 bucket hashes under `nd:`, `nd:live` unset."""
    from shared import store
    from shared.db import dispose_engines, session_scope
    from shared.dedup import LIVE_KEY, NearDuplicateIndex, Placing

    client = redis.Redis.from_url(deployment.env["INGEST_REDIS_URL"])
    client.delete(*client.keys("nd:*"))
    client.set(LIVE_KEY, "nd:")
    index = NearDuplicateIndex(client, 0.5)
    index.layout = 1
    with session_scope(f"sqlite:///{deployment.folder / 'data' / 'ingest.db'}") as session:
        rows = store.clustered_items(session, 0, 1000)
    dispose_engines()
    index.place([Placing(item_id, body, cluster_id) for item_id, body, cluster_id in rows], into="live")
    client.delete(LIVE_KEY)


def test_an_index_left_in_the_old_layout_is_rebuilt_by_migrate_and_by_up(deployment):
    """After an upgrade from version 1: `ingest doctor` warns of the old index layout, `ingest migrate`
    rebuilds it in layout 2 keeping every cluster; so does `ingest up`, in the background, and a
    near-copy dropped afterwards joins its story's cluster."""
    story = versions(edits=["sentence", "outlet", "dropped"])
    deployment.start("--concurrency", "2")
    drop(deployment, story[:3] + versions(edits=["added"])[2:4], ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"])
    deployment.drain()
    deployment.stop()
    before = {item["id"]: item["cluster_id"] for item in deployment.export()}
    assert len(set(before.values())) == 2

    _as_version_1_left_it(deployment)
    assert "near-duplicate index is in layout 1" in deployment.run("doctor", check=False).stdout
    migrated = deployment.run("migrate")
    assert "near-duplicate index rebuilt in layout 2: 5 items" in migrated.stdout
    assert "layout 1" not in deployment.run("doctor", check=False).stdout
    assert "near-duplicate index" not in deployment.run("migrate").stdout  # once only
    assert {item["id"]: item["cluster_id"] for item in deployment.export()} == before

    _as_version_1_left_it(deployment)
    deployment.start("--concurrency", "2")
    wait_until(lambda: '"index.upgraded"' in deployment.log_text(), 60, "the background rebuild")
    drop(deployment, [story[3]], ["f.txt"])
    deployment.drain()
    items = deployment.export()
    [new] = [item for item in items if item["id"] not in before]
    assert new["cluster_id"] == before[min(before)] and deployment.status()["clusters"] == 2
    assert {item["id"]: item["cluster_id"] for item in items if item["id"] in before} == before
