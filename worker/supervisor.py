"""`ingest up`: the watcher, a worker and the scheduler as child processes, kept running, stopped in order.

Each child runs in its own session so that Ctrl-C reaches only this process, which then stops
the producers first (watcher, beat), lets the worker finish what it holds (Celery's warm
shutdown; with late acknowledgement anything unfinished goes back to the queue), and stops the
private Redis last.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import structlog

from worker.lifetime import die_with_parent

log = structlog.get_logger(__name__)

RESTART_BACKOFF_MAX = 30.0
STABLE_SECONDS = 30.0  # a child that ran this long before dying restarts without delay
PRODUCER_STOP_SECONDS = 20.0


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    backoff: float = 0.0
    restart_at: float = 0.0
    restarts: int = field(default=0)
    # What the child gets from the kernel should `ingest up` die without stopping it.
    death_signal: int = signal.SIGTERM

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            self.argv, env=env, start_new_session=True, preexec_fn=die_with_parent(self.death_signal)
        )
        self.started = time.monotonic()
        log.info("up.child_started", child=self.name, pid=self.process.pid)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        """SIGTERM to the child alone (Celery then stops its own pool warmly); SIGKILL to its whole group."""
        if not self.running():
            return
        if signum == signal.SIGKILL:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def wait(self, seconds: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(seconds)
            return True
        except subprocess.TimeoutExpired:
            return False


def ingest_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker.cli", *args]


class Supervisor:
    def __init__(self, children: list[Child], env: dict[str, str], worker_stop_seconds: float) -> None:
        self.children = children
        self.env = env
        self.worker_stop_seconds = worker_stop_seconds
        self.stopping = threading.Event()
        self.signals_seen = 0

    def _on_signal(self, signum: int, _frame) -> None:
        self.signals_seen += 1
        if self.signals_seen == 1:
            log.info("up.stopping", signal=signal.Signals(signum).name)
            self.stopping.set()
        else:
            log.warning("up.killing", reason="second signal: stopping at once; unfinished work returns to the queue")
            for child in self.children:
                child.signal(signal.SIGKILL)

    def run(self) -> int:
        # A closed terminal or SSH session (SIGHUP) stops the service as Ctrl-C does, in order.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        for child in self.children:
            child.start(self.env)
        while not self.stopping.wait(0.25):
            for child in self.children:
                self._keep_alive(child)
        self.stop_all()
        return 0

    def _keep_alive(self, child: Child) -> None:
        now = time.monotonic()
        if child.running():
            return
        if child.restart_at == 0.0:
            ran = now - child.started
            child.backoff = 0.0 if ran > STABLE_SECONDS else min(max(1.0, child.backoff * 2), RESTART_BACKOFF_MAX)
            child.restart_at = now + child.backoff
            log.warning(
                "up.child_exited", child=child.name, exit_code=child.process.returncode, restart_in_s=child.backoff
            )
        if now >= child.restart_at:
            child.restart_at = 0.0
            child.restarts += 1
            child.start(self.env)

    def stop_all(self) -> None:
        producers = [c for c in self.children if c.name != "worker"]
        workers = [c for c in self.children if c.name == "worker"]
        self._stop(producers, PRODUCER_STOP_SECONDS)
        self._stop(workers, self.worker_stop_seconds)
        log.info("up.stopped")

    def _stop(self, children: list[Child], seconds: float) -> None:
        for child in children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + seconds
        for child in children:
            if not child.wait(max(0.0, deadline - time.monotonic())):
                log.warning("up.child_killed", child=child.name, reason=f"still running after {seconds:.0f}s")
                child.signal(signal.SIGKILL)
                child.wait(5)
