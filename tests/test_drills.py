"""Fault drills: a real load, a real fault, then every file counted: none lost, none twice.

Each drill records its row of the README's drill table (tests/drills.py). They are slow (marked
`drill`), and run by `make test` and in CI all the same.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import redis

from tests import drills
from tests.conftest import Deployment, wait_until
from tests.test_e2e import _redis_servers_of, drop_articles, worker_processes

pytestmark = [pytest.mark.e2e, pytest.mark.drill]


def lost_and_duplicated(site: Deployment, names: list[str]) -> tuple[int, int]:
    """Files never stored, and arrivals stored more than once, among these file names."""
    refs = [origin["ref"] for item in site.export() for origin in item["origins"]]
    return len(set(names) - set(refs)), len(refs) - len(set(refs))


def article_names(count: int, start: int = 0) -> list[str]:
    return [f"article-{number:04d}.txt" for number in range(start, start + count)]


def ingest_processes(site: Deployment) -> list[psutil.Process]:
    """Every `ingest` process of this deployment still alive, whoever its parent is now."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        alive = process.info["status"] != psutil.STATUS_ZOMBIE
        if alive and "worker.cli" in cmdline and process.info["cwd"] == str(site.folder):
            found.append(f"{process.pid} {process.info['status']} {cmdline}")
    return found


def test_workers_killed_three_times_mid_batch(deployment):
    """SIGKILL of the worker and its pool, three times while a burst is ingested: every file once."""
    deployment.env |= {"INGEST_VISIBILITY_TIMEOUT": "4", "INGEST_TASK_TIME_LIMIT": "3"}
    deployment.start("--concurrency", "2")
    wait_until(lambda: len(worker_processes(deployment)) >= 3, 30, "the worker and its pool")
    drop_articles(deployment.seeds, 2000)
    for _round in range(3):
        before = deployment.count_items()
        wait_until(lambda before=before: deployment.count_items() >= before + 20, 90, "work under way")
        victims = worker_processes(deployment)
        for process in victims:
            process.send_signal(signal.SIGKILL)
        assert deployment.count_items() < 2000, "the burst ended before the kill: nothing was tested"
        gone = {process.pid for process in victims}
        wait_until(
            lambda gone=gone: len([p for p in worker_processes(deployment) if p.pid not in gone]) >= 3,
            60,
            "a new worker",
        )
    deployment.drain(timeout=240)
    lost, duplicated = lost_and_duplicated(deployment, article_names(2000))
    drills.record(
        "workers killed mid-batch",
        "2,000 files at once, 2 processes",
        "SIGKILL of every worker process, 3 times",
        lost,
        duplicated,
    )
    assert (lost, duplicated) == (0, 0)


def test_up_killed_hung_up_on_and_stopped_mid_run(deployment):
    """`ingest up` (its private Redis) ended by SIGHUP, SIGKILL and SIGTERM in turn, each mid-burst and
    followed by a new `ingest up`: no process or Redis outlives it, one Redis at a time, every file once."""
    del deployment.env["INGEST_REDIS_URL"]
    deployment.env |= {"INGEST_VISIBILITY_TIMEOUT": "4", "INGEST_TASK_TIME_LIMIT": "3"}
    names: list[str] = []
    for number, sent in enumerate((signal.SIGHUP, signal.SIGKILL, signal.SIGTERM)):
        deployment.start("--concurrency", "2")
        wait_until(lambda: _redis_servers_of(deployment), 30, "the private Redis")
        assert len(_redis_servers_of(deployment)) == 1
        wait_until(lambda: '"watcher.started"' in deployment.log_text().split("up.started")[-1], 60, "the watcher")
        before = deployment.count_items()
        drop_articles(deployment.seeds, 500, start=number * 500)
        names += article_names(500, start=number * 500)
        wait_until(lambda before=before: deployment.count_items() >= before + 20, 90, "work under way")
        deployment.up_process.send_signal(sent)
        deployment.up_process.wait(120)
        deployment.up_process = None
        deadline = time.monotonic() + 60
        while ingest_processes(deployment) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not ingest_processes(deployment), f"{sent!r} left {ingest_processes(deployment)}"
        wait_until(lambda: not _redis_servers_of(deployment), 30, "the private Redis to end")
    deployment.start("--concurrency", "2")
    deployment.drain(timeout=240)
    lost, duplicated = lost_and_duplicated(deployment, names)
    drills.record(
        "`ingest up` killed, hung up on, stopped",
        "3 bursts of 500 files, private Redis",
        "SIGHUP, SIGKILL, SIGTERM of `ingest up` mid-burst, each followed by a restart",
        lost,
        duplicated,
    )
    assert (lost, duplicated) == (0, 0)


def _redis_with_aof(folder: Path, port: int) -> subprocess.Popen:
    from worker.broker import redis_executable, wait_for_redis

    command = [redis_executable(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", ""]
    process = subprocess.Popen(
        [*command, "--appendonly", "yes", "--appendfsync", "everysec"], stdout=subprocess.DEVNULL
    )
    wait_for_redis(f"redis://127.0.0.1:{port}/0", 10, process)
    return process


def test_redis_restarted_mid_run(deployment, tmp_path):
    """Redis (append-only file) shut down mid-burst and started again 3 s later: every file once."""
    from worker.broker import free_port

    port, folder = free_port(), tmp_path / "redis"
    folder.mkdir()
    server = _redis_with_aof(folder, port)
    url = f"redis://127.0.0.1:{port}/0"
    # Messages held when Redis went come back after the visibility timeout: short here, and above
    # the task time limit, which must not cut a task waiting a few seconds on Redis.
    deployment.env |= {"INGEST_REDIS_URL": url, "INGEST_VISIBILITY_TIMEOUT": "15", "INGEST_TASK_TIME_LIMIT": "12"}
    try:
        deployment.start("--concurrency", "2")
        wait_until(lambda: '"watcher.started"' in deployment.log_text(), 60, "the watcher")
        drop_articles(deployment.seeds, 1500)
        wait_until(lambda: deployment.count_items() >= 20, 90, "work under way")
        try:
            redis.Redis.from_url(url).shutdown()  # writes the append-only file out, then exits
        except redis.exceptions.ConnectionError:
            pass  # the answer to SHUTDOWN is the connection closing
        server.wait(30)
        assert deployment.count_items() < 1500, "the burst ended before Redis went: nothing was tested"
        time.sleep(3)  # the fault: Redis away for three seconds
        server = _redis_with_aof(folder, port)
        deployment.drain(timeout=240)
        lost, duplicated = lost_and_duplicated(deployment, article_names(1500))
    finally:
        deployment.stop()
        server.terminate()
        server.wait(10)
    drills.record(
        "Redis restarted mid-run",
        "1,500 files at once, 2 processes",
        "Redis shut down (AOF) mid-burst, started again 3 s later",
        lost,
        duplicated,
    )
    assert (lost, duplicated) == (0, 0)


def test_sqlite_locked_by_another_process_for_20_seconds(deployment):
    """Another process holds SQLite's write lock for 20 s mid-burst: writers wait, then every file lands once."""
    deployment.start("--concurrency", "2")
    wait_until(lambda: '"watcher.started"' in deployment.log_text(), 60, "the watcher")
    drop_articles(deployment.seeds, 1500)
    wait_until(lambda: deployment.count_items() >= 20, 90, "work under way")
    holder = sqlite3.connect(deployment.folder / "data" / "ingest.db", timeout=30, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    held = deployment.count_items()
    assert held < 1500, "the burst ended before the lock: nothing was tested"
    time.sleep(20)  # the fault: the lock held for twenty seconds
    holder.execute("COMMIT")
    holder.close()
    deployment.drain(timeout=240)
    lost, duplicated = lost_and_duplicated(deployment, article_names(1500))
    drills.record(
        "SQLite locked by another process",
        "1,500 files at once, 2 processes",
        "another process holds the write lock for 20 s mid-burst",
        lost,
        duplicated,
    )
    assert (lost, duplicated) == (0, 0)


def test_disk_full_under_data(deployment):
    """data/ on a small tmpfs filled to the last byte mid-run: a clear error, nothing taken that was not
    stored, and every file stored once when space returns."""
    data = deployment.folder / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(data)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        deployment.start("--concurrency", "2")
        wait_until(lambda: '"watcher.started"' in deployment.log_text(), 60, "the watcher")
        ballast = data / "ballast"
        with open(ballast, "wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass  # full: the fault is in place
        drop_articles(deployment.seeds, 300)
        wait_until(lambda: "database or disk is full" in deployment.log_text(), 60, "the error to be said")
        stuck = deployment.count_items()
        assert stuck < 300
        ballast.unlink()
        deployment.drain(timeout=240)
        lost, duplicated = lost_and_duplicated(deployment, article_names(300))
        deployment.stop()
    finally:
        if deployment.up_process is not None:
            deployment.up_process.kill()
            deployment.up_process.wait(60)
            deployment.up_process = None
        wait_until(lambda: not ingest_processes(deployment), 60, "every process to let go of data/")
        subprocess.run(["umount", str(data)], check=True, timeout=60)
    drills.record(
        "disk full under data/",
        "300 files, store on a 6 MB tmpfs",
        "the disk filled to the last byte mid-run, then space freed",
        lost,
        duplicated,
    )
    assert (lost, duplicated) == (0, 0)


def test_redis_down_at_start(deployment, tmp_path):
    """`ingest up` started while its Redis is down waits for it (one line a try), and files dropped
    meanwhile land once Redis comes up."""
    from worker.broker import free_port

    port, folder = free_port(), tmp_path / "redis"
    folder.mkdir()
    deployment.env["INGEST_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    drop_articles(deployment.seeds, 200)
    deployment.start("--concurrency", "2")
    wait_until(lambda: deployment.log_text().count('"redis.unreachable"') >= 3, 60, "three tries")
    assert deployment.up_process.poll() is None
    server = _redis_with_aof(folder, port)
    try:
        deployment.drain(timeout=120)
        lost, duplicated = lost_and_duplicated(deployment, article_names(200))
    finally:
        deployment.stop()
        server.terminate()
        server.wait(10)
    drills.record(
        "Redis down at start",
        "200 files waiting in seeds/",
        "Redis not running when `ingest up` starts, started after three tries",
        lost,
        duplicated,
    )
    assert (lost, duplicated) == (0, 0)


class TcpGate:
    """A real TCP forwarder on loopback in front of PostgreSQL that the test can close: while closed,
    connections are refused and the open ones cut at both ends, as when the database host goes away."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self._socket, self._threading = socket, threading
        self._lock = threading.Lock()
        self._open: list = []
        self._closed = False
        self.target_port = target_port
        self.port = self._listen(0)

    def _listen(self, port: int) -> int:
        self._listener = self._socket.socket()
        self._listener.setsockopt(self._socket.SOL_SOCKET, self._socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        with self._lock:
            self._closed = False
        self._threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self._listener.getsockname()[1]

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            server = self._socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                # Accepted while close() ran: cut like the others, not left to outlive the fault.
                cut_now = self._closed
                if not cut_now:
                    self._open += [client, server]
            if cut_now:
                self._cut(client, server)
                continue
            for source, sink in ((client, server), (server, client)):
                self._threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._cut(source, sink)

    def _cut(self, *ends) -> None:
        # shutdown, not only close: close() leaves a socket that another thread is reading open
        # (no FIN sent), so PostgreSQL would keep the session, and its locks, of a client gone.
        for end in ends:
            try:
                end.shutdown(self._socket.SHUT_RDWR)
            except OSError:
                pass  # not connected any more
            end.close()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            self._closed, cut, self._open = True, self._open, []
        self._cut(*cut)

    def reopen(self) -> None:
        self._listen(self.port)


@pytest.mark.postgres
def test_postgresql_refusing_connections_for_20_seconds(deployment):
    """PostgreSQL away for 20 s mid-burst (connections cut, new ones refused): writes are retried with
    capped backoff and every file lands once when it is back."""
    from sqlalchemy.engine import make_url

    from tests.conftest import PG_URL, _postgres_schema_url

    if not PG_URL:
        pytest.skip("INGEST_TEST_DATABASE_URL is not set")
    for schema_url in _postgres_schema_url():
        direct = make_url(schema_url)
        gate = TcpGate(direct.port or 5432)
        deployment.env["INGEST_DATABASE_URL"] = direct.set(port=gate.port).render_as_string(hide_password=False)
        deployment.start("--concurrency", "2")
        wait_until(lambda: '"watcher.started"' in deployment.log_text(), 60, "the watcher")
        drop_articles(deployment.seeds, 1500)
        wait_until(lambda: '"item.stored"' in deployment.log_text(), 90, "work under way")
        gate.close()
        time.sleep(20)  # the fault: the database away for twenty seconds
        gate.reopen()
        deployment.drain(timeout=300)
        lost, duplicated = lost_and_duplicated(deployment, article_names(1500))
        deployment.stop()
        gate.close()
    drills.record(
        "PostgreSQL refusing connections",
        "1,500 files at once, 2 processes, PostgreSQL store",
        "connections cut and refused for 20 s mid-burst",
        lost,
        duplicated,
    )
    assert (lost, duplicated) == (0, 0)
