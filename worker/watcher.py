"""Seeds folder -> RawInput -> queue. Takes each complete file once, across restarts.

inotify (or polling, by setting) says where to look; a full scan at start and every
`watch_rescan_seconds` finds what events missed (files dropped while stopped, a queue overflow).
A file is complete when it was closed after writing, moved into place, or has been unchanged for
`watch_settle_seconds`. The ledger in the store records what was taken, by size, mtime and sha256.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from kombu.exceptions import OperationalError as BrokerError
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from shared import store
from shared.db import session_scope
from shared.messages import Batch, RawInput, file_arrival_id, sha256_hex
from shared.seeds import SeedFile, scan, seed_file
from shared.settings import Settings

log = structlog.get_logger(__name__)

TICK_SECONDS = 0.2
RESEND_GRACE_SECONDS = 5.0
SEND_RETRY_SECONDS = 5.0
Send = Callable[[Batch], None]
QueueIdle = Callable[[], bool]


@dataclass
class Pending:
    signature: tuple[int, int]
    since: float
    ready: bool  # closed after writing, or moved into place: no need to wait for it to settle


class EventRelay(FileSystemEventHandler):
    """Runs on watchdog's thread: turns events into (hint, path) for the watcher's own loop."""

    def __init__(self, hints: queue.SimpleQueue) -> None:
        self.hints = hints

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type == "moved":
            self.hints.put(("dir" if event.is_directory else "ready", Path(event.dest_path)))
        elif event.event_type == "created":
            self.hints.put(("dir" if event.is_directory else "settle", Path(event.src_path)))
        elif event.event_type == "modified" and not event.is_directory:
            self.hints.put(("settle", Path(event.src_path)))
        elif event.event_type == "closed":
            self.hints.put(("ready", Path(event.src_path)))


class Watcher:
    def __init__(self, settings: Settings, send: Send, queue_idle: QueueIdle) -> None:
        self.settings = settings
        self.root = settings.seeds_dir
        self.send = send
        self.queue_idle = queue_idle
        self.hints: queue.SimpleQueue = queue.SimpleQueue()
        self.pending: dict[Path, Pending] = {}
        self.retry_send_at = 0.0

    # -- the loop --------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        observer = PollingObserver(timeout=1) if self.settings.watch_polling else Observer()
        observer.schedule(EventRelay(self.hints), str(self.root), recursive=True)
        observer.start()
        log.info("watcher.started", seeds_dir=str(self.root), polling=self.settings.watch_polling)
        try:
            self.rescan()
            next_rescan = time.monotonic() + self.settings.watch_rescan_seconds
            while not stop.is_set():
                self.drain_hints()
                if time.monotonic() >= next_rescan:
                    self.rescan()
                    next_rescan = time.monotonic() + self.settings.watch_rescan_seconds
                self.take_settled()
                stop.wait(TICK_SECONDS)
        finally:
            observer.stop()
            observer.join()
            log.info("watcher.stopped", pending=len(self.pending))

    def drain_hints(self) -> None:
        while True:
            try:
                hint, path = self.hints.get_nowait()
            except queue.Empty:
                return
            if hint == "dir":
                self.note_all(scan(self.root, under=path))
            else:
                self.note(path, ready=hint == "ready")

    def rescan(self) -> None:
        with session_scope(self.settings.store_url) as session:
            taken = store.taken_signatures(session)
        untaken = [seed for seed in scan(self.root) if taken.get(seed.ref) != seed.signature]
        log.debug("watcher.rescan", untaken=len(untaken))
        self.note_all(untaken)
        self.resend_lost()

    def resend_lost(self) -> None:
        """Send again what was taken but never reached the store, once the queue has nothing left.

        With the queue empty and nothing in flight, an arrival the store does not hold was lost
        by the broker (a worker killed between popping the message and recording its delivery).
        The same arrival id makes the second delivery count once.
        """
        if not self.queue_idle():
            return
        grace = datetime.now(UTC) - timedelta(seconds=max(RESEND_GRACE_SECONDS, 2 * self.settings.watch_settle_seconds))
        with session_scope(self.settings.store_url) as session:
            for taken in store.unconfirmed_taken(session, taken_before=grace):
                self._resend(session, taken)
            for raw in store.unconfirmed_submissions(session, sent_before=grace):
                log.warning("watcher.resent", origin=raw.ref, reason="submitted but never stored")
                self.send(Batch(inputs=[raw]))

    def _resend(self, session, taken) -> None:
        seed = seed_file(self.root, self.root / taken.ref)
        payload = _read_or_none(seed)
        if payload is None:
            reason = "lost in transit, and the file is gone from the seeds folder"
            arrival = store.Arrival(
                key=taken.arrival_key, kind="file", ref=taken.ref, entry_id=None, seen_at=datetime.now(UTC)
            )
            store.save_failure(session, arrival, reason)
            log.error("input.failed", origin=taken.ref, reason=reason, outcome="failed")
            return
        if sha256_hex(payload) != taken.sha256:
            return  # changed since: the scan takes the new content as a new arrival
        log.warning("watcher.resent", origin=taken.ref, reason="sent but never stored")
        if self._send(seed, payload, taken.sha256):
            taken.taken_at = datetime.now(UTC)

    def note_all(self, seeds) -> None:
        settled_before = time.time() - self.settings.watch_settle_seconds
        for seed in seeds:
            # Untouched for the settle time already (dropped while we were stopped): complete.
            self.note(seed.path, ready=seed.mtime_ns / 1e9 < settled_before)

    def note(self, path: Path, ready: bool) -> None:
        seed = seed_file(self.root, path)
        if seed is None:
            return
        known = self.pending.get(path)
        still_ready = known is not None and known.ready and known.signature == seed.signature
        self.pending[path] = Pending(seed.signature, time.monotonic(), ready or still_ready)

    def take_settled(self) -> None:
        if time.monotonic() < self.retry_send_at:
            return
        now = time.monotonic()
        for path, pending in list(self.pending.items()):
            seed = seed_file(self.root, path)
            if seed is None:
                del self.pending[path]
            elif seed.signature != pending.signature:
                self.pending[path] = Pending(seed.signature, now, False)
            elif pending.ready or now - pending.since >= self.settings.watch_settle_seconds:
                if not self.take(seed):
                    return  # the broker is away: keep everything pending and try again shortly
                del self.pending[path]

    # -- taking one file -------------------------------------------------------------------------

    def take(self, seed: SeedFile) -> bool:
        """Enqueue one complete file unless the ledger has it. False when the broker refused it."""
        with session_scope(self.settings.store_url) as session:
            known = store.taken_file(session, seed.ref)
            if known is not None and (known.size, known.mtime_ns) == seed.signature:
                return True
            if seed.size > self.settings.max_file_bytes:
                self._refuse(
                    session, seed, f"too large: {seed.size} bytes exceeds the {self.settings.max_file_bytes} byte limit"
                )
                return True
            try:
                payload = seed.path.read_bytes()
            except FileNotFoundError:
                return True  # gone before we could read it: nothing to take
            except OSError as exc:
                self._refuse(session, seed, f"unreadable: {exc.strerror or exc}")
                return True
            if len(payload) != seed.size:
                self.note(seed.path, ready=False)  # still being written after all
                return True
            digest = sha256_hex(payload)
            if known is not None and known.sha256 == digest:
                store.mark_taken(session, seed.ref, seed.size, seed.mtime_ns, digest)  # touched, not changed
                return True
            if not self._send(seed, payload, digest):
                return False
            store.mark_taken(
                session,
                seed.ref,
                seed.size,
                seed.mtime_ns,
                digest,
                arrival_key=file_arrival_id(seed.ref, digest) + ":0",
            )
        return True

    def _send(self, seed: SeedFile, payload: bytes, digest: str) -> bool:
        raw = RawInput.from_bytes(
            payload, kind="file", ref=seed.ref, mtime=seed.mtime_ns / 1e9, arrival_id=file_arrival_id(seed.ref, digest)
        )
        try:
            self.send(Batch(inputs=[raw]))
        except (BrokerError, OSError) as exc:
            log.error("watcher.send_failed", origin=seed.ref, error=str(exc).splitlines()[0])
            self.retry_send_at = time.monotonic() + SEND_RETRY_SECONDS
            return False
        log.info("watcher.taken", origin=seed.ref, size=seed.size, sha256=digest)
        return True

    def _refuse(self, session, seed: SeedFile, reason: str) -> None:
        arrival = store.Arrival(
            key=file_arrival_id(seed.ref, f"{seed.size}:{seed.mtime_ns}") + ":0",
            kind="file",
            ref=seed.ref,
            entry_id=None,
            seen_at=datetime.now(UTC),
        )
        store.save_failure(session, arrival, reason)
        store.mark_taken(session, seed.ref, seed.size, seed.mtime_ns, None)
        log.warning("input.failed", origin=seed.ref, reason=reason, outcome="failed")


def _read_or_none(seed: SeedFile | None) -> bytes | None:
    if seed is None:
        return None
    try:
        return seed.path.read_bytes()
    except OSError:
        return None
