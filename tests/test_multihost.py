"""The production stack laid out as several hosts run it (issue 13), without Docker: each role a process
of its own in a folder of its own (its own INGEST_DATA_DIR), sharing only a Redis (started here,
append-only file on) and PostgreSQL, as the compose services do.

One watcher, two workers with their own host names, two schedulers (one leads), two feeds on a
loopback server, 2,000 files: every item once, both workers take work, the clusters come out as a
single `ingest up` makes them, the roles' own /metrics add up to `ingest status`, and when one
worker's host dies (SIGKILL of its whole process group) the other finishes its work.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests import drills
from tests.conftest import PG_URL, ROOT, Deployment, _postgres_schema_url, wait_until
from tests.corpus import synthetic_stories, versions
from tests.feedserver import FeedServer, Route, rss
from tests.test_drills import _redis_with_aof

pytestmark = [pytest.mark.e2e, pytest.mark.drill, pytest.mark.postgres]

FILES = 2000


def corpus_files() -> dict[str, str]:
    """2,000 texts: stories of their own, each with six near-copies (the edits syndication makes)."""
    found = versions(synthetic_stories(FILES // 7 + 1))[:FILES]
    return {f"story-{number:04d}.txt": f"{one.title}\n\n{one.body}\n" for number, one in enumerate(found)}


def drop(seeds: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        temporary = seeds / f".{name}.tmp"
        temporary.write_text(text)
        temporary.rename(seeds / name)


class Role(Deployment):
    """One role on its own "host": a folder, an environment, a process group."""

    def __init__(self, name: str, kind: str, folder: Path, env: dict[str, str], metrics_port: int) -> None:
        super().__init__(folder, env)
        self.name = name
        self.kind = kind  # watcher, worker, beat: what `ingest doctor --role` checks
        self.metrics_port = metrics_port
        self.process: subprocess.Popen | None = None

    def start(self, *args: str) -> None:
        with open(self.folder / "role.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", *args],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: killing the "host" kills its pool too
            )

    def ingest(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return self.run(*args, timeout=timeout)

    def log(self) -> str:
        path = self.folder / "role.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text

    def kill_host(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        except ProcessLookupError:
            pass


def items_stored(metrics_text: str, outcome: str = "stored") -> float:
    pattern = rf'^ingest_items_total\{{[^}}]*outcome="{outcome}"[^}}]*\}} ([0-9.e+]+)$'
    return sum(float(value) for value in re.findall(pattern, metrics_text, re.MULTILINE))


def clusters_of_files(items: list[dict]) -> set[frozenset[str]]:
    """The near-duplicate groups, as sets of file names: comparable across stores and runs."""
    groups: dict[int, set[str]] = {}
    for item in items:
        refs = [origin["ref"] for origin in item["origins"] if origin["kind"] == "file"]
        groups.setdefault(item["cluster_id"], set()).update(refs)
    return {frozenset(group) for group in groups.values() if group}


@pytest.fixture
def stack(tmp_path, free_port_factory):
    """Redis (AOF) and a fresh PostgreSQL schema; roles are made by the test and stopped here."""
    if not PG_URL:
        pytest.skip("INGEST_TEST_DATABASE_URL is not set")
    redis_folder = tmp_path / "redis-host"
    redis_folder.mkdir()
    redis_port = free_port_factory()
    server = _redis_with_aof(redis_folder, redis_port)
    schema = _postgres_schema_url()
    database_url = next(schema)
    roles: list[Role] = []

    def role(name: str, kind: str = "cli") -> Role:
        folder = tmp_path / name
        (folder / "seeds").mkdir(parents=True)
        port = free_port_factory()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("INGEST_")},
            "PYTHONPATH": str(ROOT),
            "INGEST_CONFIG": str(ROOT / "config" / "settings.toml"),
            "INGEST_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "INGEST_DATABASE_URL": database_url,
            "INGEST_DATA_DIR": str(folder / "data"),
            "INGEST_SEEDS_DIR": str(folder / "seeds"),
            "INGEST_LOG_FORMAT": "json",
            "INGEST_METRICS_PORT": str(port),
            "INGEST_FEEDS_ALLOW_PRIVATE": "true",
            "INGEST_WATCH_SETTLE_SECONDS": "0.3",
            # A dead host's messages come back to the living one after this long.
            "INGEST_VISIBILITY_TIMEOUT": "12",
            "INGEST_TASK_TIME_LIMIT": "10",
        }
        made = Role(name, kind, folder, env, port)
        roles.append(made)
        return made

    try:
        yield role
    finally:
        for one in roles:
            one.stop()
        server.terminate()
        server.wait(10)
        next(schema, None)  # drops the schema


@pytest.fixture
def free_port_factory():
    from worker.broker import free_port

    taken: set[int] = set()

    def one() -> int:
        while (port := free_port()) in taken:
            pass
        taken.add(port)
        return port

    return one


def test_the_roles_apart_as_on_several_hosts(stack, deployment):
    files = corpus_files()
    names = sorted(files)

    # The reference: one `ingest up` on one machine (SQLite), the same files.
    drop(deployment.seeds, files)
    deployment.start("--concurrency", "2")
    deployment.drain(timeout=240)
    one_machine = clusters_of_files(deployment.export())
    deployment.stop()
    assert sum(len(group) for group in one_machine) == FILES

    migrate, watcher = stack("migrate"), stack("watcher-host", "watcher")
    workers = [stack("worker-host-a", "worker"), stack("worker-host-b", "worker")]
    schedulers = [stack("beat-host-a", "beat"), stack("beat-host-b", "beat")]
    migrate.ingest("migrate")  # the compose stack's one-shot service, before any role starts
    watcher.start("watch")
    for letter, worker in zip("ab", workers):
        worker.start("worker", "--concurrency", "1", "-n", f"worker-{letter}@host-{letter}", "--without-mingle")
    for scheduler in schedulers:
        scheduler.start("beat")
    for role in (watcher, *workers, *schedulers):
        wait_until(lambda role=role: _healthy(role), 60, f"{role.name} healthy (`ingest doctor --role {role.kind}`)")
    # Healthy is serving metrics; taking work comes a moment later: both must, or one takes it all.
    wait_until(lambda: _answering(migrate) >= {"worker-a@host-a", "worker-b@host-b"}, 60, "both workers to answer")
    wait_until(lambda: all('"beat.' in one.log() for one in schedulers), 30, "the schedulers to settle")
    leading = [one.name for one in schedulers if '"beat.leading"' in one.log()]
    assert len(leading) == 1, leading

    # Two feeds on loopback, added from any host (the store is shared).
    feeds = FeedServer().start()
    try:
        for number in (1, 2):
            entries = [
                (f"f{number}-{n}", f"Feed {number} story {n}", f"Text of feed {number} entry {n}.") for n in range(20)
            ]
            feeds.routes[f"/feed{number}.xml"] = Route(rss(f"Feed {number}", entries))
            migrate.ingest("feeds", "add", feeds.url(f"/feed{number}.xml"), "--every", "1h")

        # Phase 1: a quarter of the files; every role's own metrics add up to `ingest status`.
        first = names[:500]
        drop(watcher.folder / "seeds", {name: files[name] for name in first})
        watcher.ingest("wait", "--timeout", "240")
        wait_until(lambda: _status(migrate)["items"] == 500 + 40, 60, "the files and both feeds' entries")
        status = _status(migrate)
        assert status["failed"] == 0 and all(feeds.hits(f"/feed{n}.xml") for n in (1, 2))
        scraped = [role.metrics() for role in (watcher, *workers, *schedulers)]
        assert sum(items_stored(text) for text in scraped) == status["items"]
        assert sum(items_stored(text, "duplicate") for text in scraped) == status["duplicates"]
        per_worker = [items_stored(text) for text in scraped[1:3]]
        assert all(count > 0 for count in per_worker), f"a worker took no work: {per_worker}"
        assert 'role="watcher"' in scraped[0] and "ingest_queue_depth{" in scraped[0]
        assert "ingest_queue_depth" not in scraped[1], "workers must not each report the shared queue"
    finally:
        feeds.stop()

    # Phase 2: the rest at once; worker host a dies mid-burst, host b finishes.
    rest = names[500:]
    drop(watcher.folder / "seeds", {name: files[name] for name in rest})
    wait_until(lambda: items_stored(workers[0].metrics()) >= per_worker[0] + 50, 90, "host a at work")
    workers[0].kill_host()
    assert _status(migrate)["items"] < FILES + 40, "too late: nothing tested"
    watcher.ingest("wait", "--timeout", "240")

    exported = [json.loads(line) for line in migrate.ingest("export").stdout.splitlines()]
    refs = [origin["ref"] for item in exported for origin in item["origins"] if origin["kind"] == "file"]
    lost, duplicated = len(set(names) - set(refs)), len(refs) - len(set(refs))
    drills.record(
        "a worker host killed (roles on several hosts)",
        "2,000 files and 2 feeds; watcher, 2 workers, 2 schedulers apart, PostgreSQL",
        "SIGKILL of one worker host's processes mid-burst; the other finishes",
        lost,
        duplicated,
    )
    assert (lost, duplicated, len(exported)) == (0, 0, FILES + 40)
    assert clusters_of_files(exported) == one_machine


def _status(role: Role) -> dict:
    return json.loads(role.ingest("status", "--json").stdout)


def _answering(role: Role) -> set[str]:
    """The Celery workers that answer a ping on the stack's Redis."""
    from celery import Celery

    app = Celery(broker=role.env["INGEST_REDIS_URL"])
    try:
        return {name for answer in app.control.ping(timeout=1.0) for name in answer}
    finally:
        app.close()


def _healthy(role: Role) -> bool:
    return role.run("doctor", "--role", role.kind, timeout=60, check=False).returncode == 0
