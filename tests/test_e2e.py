"""The whole service as a user runs it: `ingest up` on a folder, files dropped in, `ingest export` read back."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from tests.conftest import SAMPLE, Deployment, copy_sample, wait_until

pytestmark = pytest.mark.e2e


def article(number: int) -> str:
    return (
        f"Council approves budget plan number {number}\n\nCity Gazette\n\n"
        f"The council voted on plan {number} after a long debate about roads, parks and schools.\n\n"
        f"Residents said plan {number} would change how the district spends its money next year.\n"
    )


def drop_articles(seeds, count: int, start: int = 0) -> None:
    for number in range(start, start + count):
        # Written under a temporary name and renamed into place, as careful tools do.
        temporary = seeds / f"article-{number:04d}.txt.tmp"
        temporary.write_text(article(number))
        temporary.rename(seeds / f"article-{number:04d}.txt")


def taken_lines(site: Deployment) -> list[str]:
    return [line for line in site.log_text().splitlines() if '"watcher.taken"' in line]


def test_the_sample_lands_with_every_field(deployment):
    """The acceptance record: title, source, original_source, language, body span and bullets."""
    copy_sample(deployment.seeds)
    deployment.start("--concurrency", "2")
    deployment.drain()
    [item] = deployment.export()
    assert item["title"] == "Putin seeks foreign volunteers to fight in Ukraine"
    assert (item["source"], item["original_source"], item["language"]) == ("The Chronicle", "BBC News", "en")
    assert item["body"].startswith("RUSSIAN President Vladimir Putin has called for foreign volunteers")
    assert item["body"].endswith("to help evacuate people from Ukraine.")
    assert sum(line.startswith("— ") for line in item["body"].split("\n")) == 4
    assert "Article Source" not in item["body"] and "Enjoyed this post? Share it!" not in item["body"]
    assert item["origins"][0]["kind"] == "file" and item["origins"][0]["ref"] == "000_adca40b1d62e3161.txt"
    assert item["cluster_id"] == item["id"] and item["content_hash"].startswith("sha256:")
    assert deployment.stop() == 0


def test_the_sample_again_elsewhere_is_one_item_with_two_origins(deployment):
    """Another name, a subfolder, CRLF and straight quotes, re-wrapped: duplicate arrivals, not new items."""
    copy_sample(deployment.seeds)
    deployment.start("--concurrency", "2")
    deployment.drain()
    text = SAMPLE.read_text().replace("“", '"').replace("”", '"').replace("’", "'")
    (deployment.seeds / "again").mkdir()
    (deployment.seeds / "again" / "copy.txt").write_bytes(text.replace("\n", "\r\n").encode())
    deployment.drain()
    [item] = deployment.export()
    assert sorted(origin["ref"] for origin in item["origins"]) == ["000_adca40b1d62e3161.txt", "again/copy.txt"]
    status = deployment.status()
    assert (status["items"], status["origins"], status["duplicates"], status["pending"]) == (1, 2, 1, 0)
    # Re-wrapped at 40, 60 and 72 columns, headline included (issue 11): three more arrivals of one item.
    from tests.test_text_shapes import _sample_rewrapped

    for width in (40, 60, 72):
        (deployment.seeds / "again" / f"wrapped-{width}.txt").write_bytes(_sample_rewrapped(width, crlf=width == 60))
    deployment.drain()
    [item] = deployment.export()
    assert len(item["origins"]) == 5 and item["title"] == "Putin seeks foreign volunteers to fight in Ukraine"
    assert (item["source"], item["original_source"]) == ("The Chronicle", "BBC News")


def test_five_hundred_files_at_once_all_land(deployment):
    """A burst is taken whole, and status agrees with export."""
    deployment.start("--concurrency", "2")
    drop_articles(deployment.seeds, 500)
    deployment.drain(timeout=180)
    items = deployment.export()
    assert len(items) == 500 and all(len(item["origins"]) == 1 for item in items)
    status = deployment.status()
    assert (status["items"], status["origins"], status["duplicates"], status["failed"]) == (500, 500, 0, 0)


def worker_processes(site: Deployment) -> list[psutil.Process]:
    up = psutil.Process(site.up_process.pid)
    found = []
    for process in up.children(recursive=True):
        try:
            if "worker.cli worker" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue  # ended (or a zombie) meanwhile: not a worker any more
    return found


def test_a_message_the_broker_lost_is_sent_again(deployment):
    """A taken file whose message vanished (popped by a dying worker) is sent again once the queue is idle."""
    import redis

    copy_sample(deployment.seeds)
    watcher = deployment.spawn("watch")
    client = redis.Redis.from_url(deployment.env["INGEST_REDIS_URL"])
    wait_until(lambda: client.llen("ingest") == 1, 30, "the watcher to queue the sample")
    client.delete("ingest")  # the loss: no worker will ever see that message
    worker = deployment.spawn("worker", "--concurrency", "1")
    deployment.drain(timeout=60)
    [item] = deployment.export()
    assert len(item["origins"]) == 1
    for process in (watcher, worker):
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    assert '"watcher.resent"' in deployment.log_text()


def test_a_lost_submission_is_sent_again(deployment, tmp_path):
    """`ingest submit` keeps what it sent until it is stored: a lost message is sent again."""
    import redis

    (tmp_path / "one.txt").write_text(article(1))
    deployment.run("submit", str(tmp_path / "one.txt"))
    client = redis.Redis.from_url(deployment.env["INGEST_REDIS_URL"])
    assert client.llen("ingest") == 1
    client.delete("ingest")  # lost before any worker saw it
    assert deployment.status()["pending_detail"]["files_unstored"] == 1
    deployment.start("--concurrency", "1")
    deployment.drain(timeout=60)
    [item] = deployment.export()
    assert item["origins"][0]["ref"] == str(tmp_path / "one.txt")
    assert '"watcher.resent"' in deployment.log_text()


def test_a_restart_takes_exactly_the_new_files(deployment):
    """Files dropped while stopped are taken at the next start; files already taken are not."""
    drop_articles(deployment.seeds, 3)
    deployment.start("--concurrency", "1")
    deployment.drain()
    assert deployment.stop() == 0
    assert len(taken_lines(deployment)) == 3
    drop_articles(deployment.seeds, 2, start=3)
    os.utime(deployment.seeds / "article-0000.txt")  # touched, same content: not new
    deployment.start("--concurrency", "1")
    deployment.drain()
    assert len(taken_lines(deployment)) == 5
    items = deployment.export()
    assert len(items) == 5 and all(len(item["origins"]) == 1 for item in items)


def test_ignored_names_and_links_are_not_taken(deployment, tmp_path):
    """Hidden, temporary and editor files, and links (never followed out of the folder), stay untouched."""
    outside = tmp_path / "outside.txt"
    outside.write_text(article(1))
    seeds = deployment.seeds
    (seeds / ".hidden.txt").write_text(article(2))
    (seeds / "draft.txt.swp").write_text(article(3))
    (seeds / "download.txt.crdownload").write_text(article(4))
    (seeds / "link.txt").symlink_to(outside)
    (seeds / ".git").mkdir()
    (seeds / ".git" / "inside.txt").write_text(article(5))
    drop_articles(seeds, 1, start=9)
    deployment.start("--concurrency", "1")
    deployment.drain()
    assert [origin["ref"] for item in deployment.export() for origin in item["origins"]] == ["article-0009.txt"]
    assert deployment.status()["failed"] == 0


def test_bad_files_become_failures_and_do_not_block_the_rest(deployment):
    """An unsupported file, an empty one and a too-large one each get a reason; good files still land."""
    deployment.env |= {"INGEST_MAX_FILE_BYTES": "2000"}
    seeds = deployment.seeds
    (seeds / "report.pdf").write_bytes(b"%PDF-1.4 not for us")
    (seeds / "empty.txt").write_bytes(b"")
    (seeds / "huge.txt").write_text("Title\n\n" + "word " * 1000)
    drop_articles(seeds, 2)
    deployment.start("--concurrency", "2")
    deployment.drain()
    assert len(deployment.export()) == 2
    reasons = {f["ref"]: f["reason"] for f in __import__("json").loads(deployment.run("failures", "--json").stdout)}
    assert reasons["report.pdf"] == "unsupported format"
    assert reasons["empty.txt"] == "empty document"
    assert reasons["huge.txt"].startswith("too large")
    assert deployment.status()["failed"] == 3


POISON_HOOK = """
# Loaded by every process of the test's deployment (sitecustomize): a parser that kills the worker
# process, as a crash in a C extension would, whenever it meets the marker.
import os

import shared.pipeline

_derive = shared.pipeline.derive


def derive(name, payload, context, *args, **kwargs):
    if b"KILL-THE-WORKER" in payload:
        os._exit(70)
    return _derive(name, payload, context, *args, **kwargs)


shared.pipeline.derive = derive
"""


def test_an_input_that_kills_the_worker_fails_alone_after_a_bounded_number_of_deaths(deployment, tmp_path):
    """A file whose parsing kills the worker process every time: after worker_kills_max deaths it is a
    failure with its bytes kept, and the files it arrived with (packed in one message) all land."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(POISON_HOOK)
    deployment.env |= {"PYTHONPATH": f"{hook}:{deployment.env['PYTHONPATH']}", "INGEST_WORKER_KILLS_MAX": "2"}
    drop_articles(deployment.seeds, 10)
    (deployment.seeds / "poison.txt").write_text("A story that crashes parsers\n\nKILL-THE-WORKER\n")
    deployment.start("--concurrency", "1")
    deployment.drain(timeout=180)
    assert deployment.count_items() == 10
    [failure] = json.loads(deployment.run("failures", "--json").stdout)
    assert (failure["ref"], failure["reason"]) == ("poison.txt", "killed the worker 2 times")
    import sqlite3

    with sqlite3.connect(deployment.folder / "data" / "ingest.db") as connection:
        [(kept,)] = connection.execute(
            "SELECT count(*) FROM raw_blobs JOIN failures ON failures.raw_sha256 = raw_blobs.sha256"
        ).fetchall()
    assert kept == 1
    # One death with the whole pack in hand, then two with the poison alone: bounded, then no more.
    assert deployment.log_text().count("exited with 'exitcode 70'") == 3


def test_a_file_written_slowly_is_taken_once_complete(deployment):
    """A created event comes before the writing ends: the file is taken only when it settles."""
    deployment.start("--concurrency", "1")
    wait_until(lambda: '"watcher.started"' in deployment.log_text(), 30, "the watcher")
    target = deployment.seeds / "slow.txt"
    with open(target, "w") as handle:
        handle.write("A slowly written story\n\n")
        handle.flush()
        for number in range(4):
            time.sleep(0.25)  # a slow writer, not a wait for the service
            handle.write(f"Paragraph {number} of the slowly written story, with some words.\n\n")
            handle.flush()
    deployment.drain()
    [item] = deployment.export()
    assert item["body"].count("Paragraph") == 4


def test_the_polling_observer_takes_files_too(deployment):
    """For mounts that send no inotify events: INGEST_WATCH_POLLING=true."""
    deployment.env["INGEST_WATCH_POLLING"] = "true"
    deployment.start("--concurrency", "1")
    wait_until(lambda: '"watcher.started"' in deployment.log_text(), 30, "the watcher")
    drop_articles(deployment.seeds, 2)
    (deployment.seeds / "later").mkdir()
    copy_sample(deployment.seeds / "later")
    deployment.drain()
    assert len(deployment.export()) == 3
    assert '"polling": true' in deployment.log_text()


def _queued_messages(deployment: Deployment) -> list[dict]:
    """The task messages waiting on the ingest queue (kombu's envelope: the body is its JSON text)."""
    import redis

    client = redis.Redis.from_url(deployment.env["INGEST_REDIS_URL"])
    envelopes = [json.loads(raw) for raw in client.lrange("ingest", 0, -1)]
    assert all(envelope["properties"]["body_encoding"] is None for envelope in envelopes)
    return [json.loads(envelope["body"])[0][0] for envelope in envelopes]


def test_submit_enqueues_files_from_anywhere(deployment, tmp_path):
    """`ingest submit` takes paths outside the seeds folder, recorded as given."""
    elsewhere = tmp_path / "inbox"
    elsewhere.mkdir()
    (elsewhere / "one.txt").write_text(article(1))
    copy_sample(elsewhere)
    result = deployment.run("submit", str(elsewhere / "one.txt"), str(elsewhere / "000_adca40b1d62e3161.txt"))
    assert "queued 2 files" in result.stdout
    assert [len(message["inputs"]) for message in _queued_messages(deployment)] == [2]  # packed: one message
    deployment.start("--concurrency", "1")
    deployment.drain()
    refs = sorted(origin["ref"] for item in deployment.export() for origin in item["origins"])
    assert refs == sorted([str(elsewhere / "one.txt"), str(elsewhere / "000_adca40b1d62e3161.txt")])
    missing = deployment.run("submit", str(elsewhere / "nope.txt"), check=False)
    assert missing.returncode == 1 and missing.stderr.strip().startswith("error:")


def _redis_servers_of(deployment: Deployment) -> list[psutil.Process]:
    """redis-server processes on the deployment's data folder (Redis works in the folder it keeps its files in)."""
    servers = []
    for process in psutil.process_iter(["name", "cwd"]):
        if process.info["name"] == "redis-server" and process.info["cwd"] == str(deployment.folder / "data"):
            servers.append(process)
    return servers


def test_up_runs_its_own_redis_when_none_is_set(deployment):
    """With INGEST_REDIS_URL unset: a private Redis under data/, found by the other commands, stopped
    on exit, SIGHUP (a closed terminal) stopping `ingest up` as Ctrl-C does; and when `ingest up` is
    killed outright, its Redis ends too."""
    del deployment.env["INGEST_REDIS_URL"]
    copy_sample(deployment.seeds)
    deployment.start("--concurrency", "1")
    wait_until(lambda: (deployment.folder / "data" / "redis.url").exists(), 30, "the private Redis")
    deployment.drain()
    assert deployment.status()["items"] == 1
    deployment.up_process.send_signal(signal.SIGHUP)
    assert deployment.up_process.wait(60) == 0
    deployment.up_process = None
    assert not (deployment.folder / "data" / "redis.url").exists() and not _redis_servers_of(deployment)
    assert (deployment.folder / "data" / "ingest.db").exists()
    assert (deployment.folder / "data" / "appendonly.aof").exists()
    assert '"up.stopped"' in deployment.log_text() and "Traceback" not in deployment.log_text()

    deployment.start("--concurrency", "1")
    [server] = wait_until(lambda: _redis_servers_of(deployment), 30, "the private Redis again")
    deployment.up_process.kill()
    deployment.up_process.wait(10)
    deployment.up_process = None
    server.wait(30)  # raises psutil.TimeoutExpired if it outlives its owner
    assert not _redis_servers_of(deployment)


def test_every_format_lands_and_the_same_article_is_one_item(deployment):
    """The article as .txt, .html, .md, .json and in an RSS feed: one item with five origins; a bad
    JSON line fails alone with its number; feed entries record their ids."""
    import json
    import shutil

    from tests.conftest import FIXTURES

    copy_sample(deployment.seeds)
    for path in (FIXTURES / "same-article").iterdir():
        shutil.copyfile(path, deployment.seeds / path.name)
    shutil.copyfile(FIXTURES / "heldout" / "stream.jsonl", deployment.seeds / "stream.jsonl")
    shutil.copyfile(FIXTURES / "heldout" / "observatory.atom", deployment.seeds / "observatory.atom")
    deployment.start("--concurrency", "2")
    deployment.drain()
    items = {item["title"]: item for item in deployment.export()}
    putin = items["Putin seeks foreign volunteers to fight in Ukraine"]
    assert sorted(o["ref"] for o in putin["origins"]) == sorted(
        ["000_adca40b1d62e3161.txt", "putin.html", "putin.md", "putin.json", "putin.rss"]
    )
    assert {o["ref"]: o["entry_id"] for o in putin["origins"]}["putin.rss"] == "chronicle-2022-03-11-putin"
    comet = items["Comet visible to the naked eye this week"]
    assert comet["origins"][0]["entry_id"] == "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a"
    assert {"Ferry timetable changes", "School wins robotics prize", "Open night at the dome"} <= set(items)
    [failure] = json.loads(deployment.run("failures", "--json").stdout)
    assert failure["ref"] == "stream.jsonl" and failure["reason"].startswith("line 2: not valid JSON")
    status = deployment.status()
    assert (status["items"], status["duplicates"], status["failed"]) == (len(items), 4, 1)
    shares = {row["format"]: row for row in json.loads(deployment.run("stats", "fields", "--json").stdout)}
    assert sum(row["items"] for row in shares.values()) == len(items)
    assert shares["text"]["fields"]["source"] == 1.0 and shares["feed"]["fields"]["published_at"] == 1.0
    table = deployment.run("stats", "fields").stdout.splitlines()
    assert table[0].split()[:3] == ["format", "items", "source"] and len(table) == 1 + len(shares)


def test_metrics_are_summed_over_every_worker_process(deployment):
    """INGEST_METRICS_PORT: items by format and outcome, task times, queue gauges, from all processes."""
    import httpx

    from worker.broker import free_port

    port, api_port = free_port(), free_port()
    deployment.env |= {"INGEST_METRICS_PORT": str(port), "INGEST_API_PORT": str(api_port)}
    copy_sample(deployment.seeds)
    drop_articles(deployment.seeds, 5)
    (deployment.seeds / "notes.pdf").write_bytes(b"%PDF")
    deployment.start("--concurrency", "2")
    deployment.drain()
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'ingest_items_total{format="text",outcome="stored",role="up"} 6.0' in text
    assert 'ingest_items_total{format="unknown",outcome="failed",role="up"} 1.0' in text
    # Files dropped together may travel packed: one task per message, as many as the worker logged.
    outcome_lines = [json.loads(line) for line in deployment.log_text().splitlines() if '"worker.tasks"' in line]
    tasks = {line["task_id"] for line in outcome_lines if line.get("task") == "ingest.process"}
    assert f'ingest_task_seconds_count{{role="up",task="ingest.process"}} {len(tasks)}.0' in text
    assert 'ingest_queue_depth{role="up"} 0.0' in text and 'ingest_oldest_pending_seconds{role="up"} 0.0' in text
    # The API serves the same sums at its own /metrics.
    from_api = httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=10).text
    assert 'ingest_items_total{format="text",outcome="stored",role="up"} 6.0' in from_api


def test_wait_counts_the_files_the_watcher_holds_or_has_not_heard_of(deployment):
    """A file still being written is pending by the watcher's own account, then lands and is not;
    a file whose events the watcher has not read yet is pending too."""
    deployment.env["INGEST_WATCH_SETTLE_SECONDS"] = "60"  # held open: only the close makes it complete
    deployment.start("--concurrency", "1")
    wait_until(lambda: '"watcher.started"' in deployment.log_text(), 30, "the watcher")
    deployment.drain()
    with open(deployment.seeds / "open.txt", "w") as handle:
        handle.write("A story still being written\n\nIts first paragraph is here.\n")
        handle.flush()
        wait_until(lambda: deployment.status()["pending_detail"]["files_waiting"] == 1, 10, "the watcher to hold it")
        assert deployment.run("wait", "--timeout", "0.5", check=False).returncode == 1
    deployment.drain()
    assert [item["title"] for item in deployment.export()] == ["A story still being written"]

    # A file renamed in while the watcher is behind on its events: its last word is "nothing held",
    # but `wait` must not call that idle.
    [watcher] = [p for p in psutil.Process(deployment.up_process.pid).children() if "watch" in p.cmdline()]
    watcher.suspend()
    try:
        copy_sample(deployment.seeds)
        assert deployment.run("wait", "--timeout", "1", check=False).returncode == 1
    finally:
        watcher.resume()
    deployment.drain()
    assert len(deployment.export()) == 2


def test_wait_hears_from_the_watcher_through_a_barrier_and_leaves_nothing_behind(deployment):
    """`ingest wait` drops a hidden barrier file into seeds/: the watcher hears it after every file
    renamed in before it and says so, so the wait needs no walk of the folder. The barrier never
    becomes an input and is removed."""
    import redis

    deployment.start("--concurrency", "2")
    wait_until(lambda: '"watcher.started"' in deployment.log_text(), 30, "the watcher")
    drop_articles(deployment.seeds, 200)
    deployment.drain()
    assert deployment.count_items() == 200 and deployment.status()["failed"] == 0
    assert not [path.name for path in deployment.seeds.iterdir() if path.name.startswith(".ingest-wait-")]
    client = redis.Redis.from_url(deployment.env["INGEST_REDIS_URL"])
    assert client.keys("ingest:watcher:barrier:*"), "the watcher acknowledged no barrier"
