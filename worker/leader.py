"""One scheduler in charge: `ingest beat` leads only while it holds a Redis lock, renewed as it runs.

A second `ingest beat` waits on standby and takes over when the leader stops or dies (its lock
expires after LOCK_SECONDS). Were two to run at once anyway, the store's claim on due feeds still
queues each feed once.
"""

from __future__ import annotations

import os
import signal
import threading

import redis
import structlog
from redis.exceptions import LockError, RedisError

log = structlog.get_logger(__name__)

LOCK_KEY = "ingest:beat:leader"
LOCK_SECONDS = 30.0
STANDBY_POLL_SECONDS = 2.0


class Leadership:
    def __init__(self, client: redis.Redis) -> None:
        self.lock = client.lock(LOCK_KEY, timeout=LOCK_SECONDS, thread_local=False)

    def wait_to_lead(self, stop: threading.Event) -> bool:
        """Block until this process holds the lock (True) or `stop` is set (False)."""
        announced = False
        while not stop.is_set():
            if self.lock.acquire(blocking=False):
                log.info("beat.leading")
                return True
            if not announced:
                log.info("beat.standby", reason="another scheduler is in charge")
                announced = True
            stop.wait(STANDBY_POLL_SECONDS)
        return False

    def keep(self) -> threading.Thread:
        """Renew the lock in the background; if it is lost, stop this process so it cannot double the schedule."""
        thread = threading.Thread(target=self._renew, name="beat-leadership", daemon=True)
        thread.start()
        return thread

    def _renew(self) -> None:
        while True:
            threading.Event().wait(LOCK_SECONDS / 3)
            try:
                self.lock.reacquire()
            except (LockError, RedisError) as exc:
                log.error("beat.leadership_lost", error=str(exc) or type(exc).__name__)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def release(self) -> None:
        try:
            self.lock.release()
        except (LockError, RedisError):
            pass  # expired or taken over already: nothing left to give back
