"""Seeds folder -> RawInput -> queue. Takes each complete file once, across restarts.

inotify (read by worker.inotify_events; watchdog where polling is set or inotify is missing) says
where to look, and the watcher wakes on each event; a full scan at start and every
`watch_rescan_seconds` (on a thread of its own, so it never holds up new files) finds what events
missed: files dropped while stopped; and at once when the kernel's event queue overflows.
A file is complete when it was closed after writing, moved into place (also from outside the
folder), or has been unchanged for `watch_settle_seconds`. The ledger in the store records what was
taken, by size, mtime and sha256.

Under a burst, one pass takes every complete file: one ledger query for all of them, messages of up
to `watch_batch_files` files and `watch_batch_bytes` bytes, one ledger transaction. A file dropped
alone goes alone, within `watch_batch_wait_ms` of its event.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

import structlog
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import OperationalError as DatabaseError
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from shared import store
from shared.db import session_scope
from shared.errors import ServiceError
from shared.messages import Batch, RawInput, file_arrival_id, packs, sha256_hex
from shared.seeds import SeedFile, scan, scan_entries, seed_file
from shared.settings import Settings
from worker.broker import BARRIER_PREFIX

log = structlog.get_logger(__name__)

IDLE_WAKE_SECONDS = 0.25  # how soon a stop request is noticed when no event comes
RESEND_GRACE_SECONDS = 5.0
SEND_RETRY_SECONDS = 5.0
PACKS_PER_PASS = 10  # a pass records its files in the ledger at least every this many messages
# The events that say where to look; the others (opened, closed without writing: our own reads) are
# not even asked of the kernel.
WATCHED_EVENTS = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirMovedEvent,
]
STATE_RENEW_SECONDS = 1.0
try:
    from worker.inotify_events import InotifyEvents
except (ImportError, OSError):  # not Linux: watchdog's observer for the platform instead
    InotifyEvents = None
Send = Callable[[Batch], None]
QueueIdle = Callable[[], bool]
Report = Callable[[int, bool], None]  # (files held, a walk of the folder on that must end before we know)
Acknowledge = Callable[[str, int, bool], None]  # a barrier's name, with the state that counts every file before it


@dataclass
class Pending:
    signature: tuple[int, int]
    since: float
    ready: bool  # closed after writing, or moved into place: no need to wait for it to settle
    # Ready and looked at (stat) since the last pass: the pass takes it as seen, without a second
    # look a moment later (a change since then shows when it is read: a size not as seen, or, for
    # the same size, a modification time the next re-scan finds newer than the ledger's).
    just_seen: SeedFile | None = None


class EventRelay(FileSystemEventHandler):
    """Runs on watchdog's thread: turns events into (hint, path) for the watcher's own loop."""

    def __init__(self, hints: queue.SimpleQueue) -> None:
        self.hints = hints

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type == "created" and Path(event.src_path).name.startswith(BARRIER_PREFIX):
            self.hints.put(("barrier", Path(event.src_path).name))
        elif event.event_type == "moved":
            # Renamed within the folder, or moved in from outside it (no source then): complete.
            # Moved out of the folder (no destination): nothing to take.
            if event.dest_path:
                self.hints.put(("dir" if event.is_directory else "ready", Path(event.dest_path)))
        elif event.event_type == "created":
            self.hints.put(("dir" if event.is_directory else "settle", Path(event.src_path)))
        elif event.event_type == "modified" and not event.is_directory:
            self.hints.put(("settle", Path(event.src_path)))
        elif event.event_type == "closed":
            self.hints.put(("ready", Path(event.src_path)))


@dataclass(frozen=True)
class Outgoing:
    """A complete file read and ready to send."""

    seed: SeedFile
    payload: bytes
    digest: str

    @cached_property
    def arrival_id(self) -> str:  # the message's and the ledger's: made once (uuid5, about 3 µs)
        return file_arrival_id(self.seed.ref, self.digest)


class Watcher:
    def __init__(
        self,
        settings: Settings,
        send: Send,
        queue_idle: QueueIdle,
        report: Report | None = None,
        acknowledge: Acknowledge | None = None,
    ) -> None:
        self.settings = settings
        self.report = report
        self.acknowledge = acknowledge
        self.barriers: list[str] = []
        # Overflows met, and the number of them the last finished walk began after: while fewer,
        # files may lie in the folder unheard of, and the state says a walk is on.
        self.overflows = self.overflows_walked = self.overflows_walking = 0
        self.reported: tuple[tuple[int, bool], float] | None = None
        self.started_scan = False
        self.root = settings.seeds_dir
        self.send = send
        self.queue_idle = queue_idle
        self.hints: queue.SimpleQueue = queue.SimpleQueue()
        self.pending: dict[Path, Pending] = {}
        # Taken since the walk on began, until its last hint is handled: the walk read the ledger
        # before, and finds them untaken.
        self.taken_during_walk: dict[Path, tuple[int, int]] | None = None
        self.walks = 0
        self.retry_send_at = 0.0
        self.scanner: threading.Thread | None = None
        self.next_rescan = 0.0

    # -- the loop --------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        events = self._events()
        events.start()
        log.info("watcher.started", seeds_dir=str(self.root), polling=self.settings.watch_polling)
        try:
            self.start_rescan()
            while not stop.is_set():
                first = self.next_hint(self.seconds_to_next_duty())
                if first is not None:
                    self.linger()
                    self.handle(*first)
                self.drain_hints()
                self.store_duties()
                self.report_state()
                self.acknowledge_barriers()
        finally:
            events.stop()
            events.join()
            log.info("watcher.stopped", pending=len(self.pending))

    def store_duties(self) -> None:
        """Re-scans, resends and taking files all write to the store; while it is away (PostgreSQL
        refusing connections, SQLite locked past its busy timeout, a full disk) the watcher waits and
        tries again, holding the files it has noticed, instead of exiting."""
        try:
            self.rescan_duties()
            self.take_ready()
        except DatabaseError as exc:
            log.warning("watcher.store_unavailable", error=_first_line(exc), retry_in_seconds=SEND_RETRY_SECONDS)
            self.retry_send_at = time.monotonic() + SEND_RETRY_SECONDS

    def report_state(self) -> None:
        """Say what the watcher holds whenever it changes (at once, so `ingest wait` never reads an
        old zero) and at least every STATE_RENEW_SECONDS (the state expires when not renewed)."""
        if self.report is None:
            return
        state = self.state()
        now = time.monotonic()
        if self.reported is None or self.reported[0] != state or now - self.reported[1] >= STATE_RENEW_SECONDS:
            self.report(*state)
            self.reported = (state, now)

    def state(self) -> tuple[int, bool]:
        """(files held: noticed, not yet sent, or still among the hints; a walk is on that must end first)."""
        walking = not self.started_scan or self.overflows_walked < self.overflows
        return len(self.pending) + self.hints.qsize(), walking

    def acknowledge_barriers(self) -> None:
        """Every event before each barrier handled: said with the state that now counts their files."""
        # Polling gives no order among the changes of one look: a barrier proves nothing then.
        if self.acknowledge is not None and not self.settings.watch_polling:
            for name in self.barriers:
                self.acknowledge(name, *self.state())
        self.barriers.clear()

    def events_lost(self, reason: str) -> None:
        """The kernel dropped events: walk the folder now (after the walk on, if one is: it may have
        passed where the lost files are), saying meanwhile that a walk is on."""
        self.overflows += 1
        log.warning("watcher.events_lost", reason=f"{reason}: walking the folder")
        if self.scanner is None:
            self.start_rescan()
        else:
            self.next_rescan = 0.0  # the next walk starts as soon as this one ends

    def _events(self):
        """What hears the folder: inotify read directly, else a watchdog observer (polling, or the
        platform's own); each has start(), stop() and join()."""
        if not self.settings.watch_polling and InotifyEvents is not None:
            try:
                return InotifyEvents(self.root, self.hints, BARRIER_PREFIX)
            except OSError as exc:  # most often fs.inotify.max_user_instances, all taken by other programs
                raise ServiceError(
                    f"cannot watch {self.root} with inotify: {exc.strerror or exc}; "
                    "raise fs.inotify.max_user_instances, or set INGEST_WATCH_POLLING=true"
                ) from exc
        observer = PollingObserver(timeout=1) if self.settings.watch_polling else Observer()
        observer.schedule(EventRelay(self.hints), str(self.root), recursive=True, event_filter=WATCHED_EVENTS)
        return observer

    def seconds_to_next_duty(self) -> float:
        """Until the earliest of: a pending file settling, the next re-scan, a send retry."""
        now = time.monotonic()
        duties = [now + IDLE_WAKE_SECONDS, self.next_rescan]
        if now < self.retry_send_at:
            duties.append(self.retry_send_at)
        elif self.pending:
            settle = self.settings.watch_settle_seconds
            duties.append(min(p.since + (0 if p.ready else settle) for p in self.pending.values()))
        return max(0.0, min(duties) - now)

    def next_hint(self, seconds: float) -> tuple[str, object] | None:
        """The next hint, waiting at most `seconds` for one."""
        try:
            return self.hints.get(timeout=seconds) if seconds > 0 else self.hints.get_nowait()
        except queue.Empty:
            return None

    def linger(self) -> None:
        """A burst's events come close together: wait a few milliseconds for more, so they travel packed."""
        deadline = time.monotonic() + self.settings.watch_batch_wait_ms / 1000
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.001))

    def drain_hints(self) -> None:
        while (hint := self.next_hint(0)) is not None:
            self.handle(*hint)

    def handle(self, hint: str, subject) -> None:
        if hint == "dir":
            self.note_all(scan(self.root, under=subject))
        elif hint == "scanned":  # a SeedFile the re-scan found untaken
            if (self.taken_during_walk or {}).get(subject.path) != subject.signature:
                self.note_all([subject])
        elif hint == "walked":
            if subject == self.walks:  # the last walk begun is over, its every hint handled
                self.taken_during_walk = None
        elif hint == "barrier":
            self.barriers.append(subject)
        elif hint == "overflow":
            self.events_lost(subject or "the kernel's event queue overflowed")
        else:
            self.note(subject, ready=hint == "ready")

    # -- the periodic re-scan --------------------------------------------------------------------

    def start_rescan(self) -> None:
        """Walk the folder on a thread of its own: what it finds arrives as hints, like events."""
        self.walks += 1
        self.scanner = threading.Thread(target=self._rescan, args=(self.walks,), name="rescan", daemon=True)
        self.next_rescan = math.inf  # none is due while one runs: the loop must not spin waiting for it
        self.taken_during_walk = {}
        self.overflows_walking = self.overflows
        self.scanner.start()

    def _rescan(self, number: int) -> None:
        try:
            self._walk()
        finally:
            self.hints.put(("walked", number))  # after every hint of this walk

    def _walk(self) -> None:
        try:
            with session_scope(self.settings.store_url) as session:
                taken = store.taken_signatures(session)
        except DatabaseError as exc:  # the next re-scan comes at its time; the loop says the store is away
            log.warning("watcher.rescan_failed", error=_first_line(exc))
            return
        untaken = 0
        for ref, path, size, mtime_ns in scan_entries(self.root):
            if taken.get(ref) != (size, mtime_ns):
                untaken += 1
                self.hints.put(("scanned", SeedFile(ref, Path(path), size, mtime_ns)))
        log.debug("watcher.rescan", untaken=untaken, taken=len(taken))

    def rescan_duties(self) -> None:
        """After a re-scan ends: resend what was lost; when the period is up, start the next one."""
        if self.scanner is not None and not self.scanner.is_alive():
            self.scanner = None
            self.started_scan = True
            self.overflows_walked = self.overflows_walking
            # An overflow met during the walk: another walk at once, else the next at its time.
            behind = self.overflows_walked < self.overflows
            self.next_rescan = 0.0 if behind else time.monotonic() + self.settings.watch_rescan_seconds
            self.resend_lost()
        if self.scanner is None and time.monotonic() >= self.next_rescan:
            self.start_rescan()

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
        digest = sha256_hex(payload)
        if digest != taken.sha256:
            return  # changed since: the scan takes the new content as a new arrival
        log.warning("watcher.resent", origin=taken.ref, reason="sent but never stored")
        if self._send_pack([Outgoing(seed, payload, digest)]):
            taken.taken_at = datetime.now(UTC)

    # -- what is pending -------------------------------------------------------------------------

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
        ready = ready or still_ready
        self.pending[path] = Pending(seed.signature, time.monotonic(), ready, seed if ready else None)

    def complete_files(self) -> list[SeedFile]:
        """Pending files that are complete now; drops those gone, restarts the clock of those changed."""
        now = time.monotonic()
        complete = []
        for path, pending in list(self.pending.items()):
            if pending.just_seen is not None:
                complete.append(pending.just_seen)
                pending.just_seen = None  # should it stay pending, the next pass looks again
                continue
            seed = seed_file(self.root, path)
            if seed is None:
                del self.pending[path]
            elif seed.signature != pending.signature:
                self.pending[path] = Pending(seed.signature, now, False)
            elif pending.ready or now - pending.since >= self.settings.watch_settle_seconds:
                complete.append(seed)
        return complete

    # -- taking files ----------------------------------------------------------------------------

    def take_ready(self) -> None:
        """Take every complete file: one ledger query, packed messages, one ledger write per pass."""
        if time.monotonic() < self.retry_send_at:
            return
        complete = self.complete_files()
        step = self.settings.watch_batch_files * PACKS_PER_PASS
        for start in range(0, len(complete), step):
            if not self.take_pass(complete[start : start + step]):
                return  # the broker is away: keep the rest pending and try again shortly

    def take_pass(self, seeds: list[SeedFile]) -> bool:
        """Take these files; False when the broker refused a message (the files not sent stay pending)."""
        with session_scope(self.settings.store_url) as session:
            known = store.taken_files(session, [seed.ref for seed in seeds])
        outgoing, ledger, failures = self.sort_out(seeds, known)
        sent_all = True
        for pack in self.packs(outgoing):
            if not self._send_pack(pack):
                sent_all = False
                break
            ledger += [_ledger_row(o.seed, o.digest, o.arrival_id + ":0") for o in pack]
        with session_scope(self.settings.store_url) as session:
            store.save_writes(session, failures)
            store.mark_taken_many(session, ledger)
        for row in ledger:
            path = self.root / row["ref"]
            self.pending.pop(path, None)
            if self.taken_during_walk is not None:
                self.taken_during_walk[path] = (row["size"], row["mtime_ns"])
        return sent_all

    def sort_out(
        self, seeds: list[SeedFile], known: dict[str, store.TakenFile]
    ) -> tuple[list[Outgoing], list[dict], list[store.FailureWrite]]:
        """What each complete file needs: sending, only a ledger update, or a failure record."""
        outgoing, ledger, failures = [], [], []
        for seed in seeds:
            taken = known.get(seed.ref)
            if taken is not None and (taken.size, taken.mtime_ns) == seed.signature:
                self.pending.pop(seed.path, None)  # taken already
                continue
            payload, refusal = self._read(seed)
            if refusal is not None:
                failures.append(store.FailureWrite(_refused_arrival(seed), refusal))
                ledger.append(_ledger_row(seed, None, None))
                log.warning("input.failed", origin=seed.ref, reason=refusal, outcome="failed")
            elif payload is not None:  # else gone, or still being written after all
                digest = sha256_hex(payload)
                if taken is not None and taken.sha256 == digest:
                    ledger.append(_ledger_row(seed, digest, None))  # touched, not changed
                else:
                    outgoing.append(Outgoing(seed, payload, digest))
        return outgoing, ledger, failures

    def _read(self, seed: SeedFile) -> tuple[bytes | None, str | None]:
        """The file's bytes, or a reason to refuse it; (None, None) when there is nothing to take yet."""
        if seed.size > self.settings.max_file_bytes:
            return None, f"too large: {seed.size} bytes exceeds the {self.settings.max_file_bytes} byte limit"
        try:
            payload = seed.path.read_bytes()
        except FileNotFoundError:
            self.pending.pop(seed.path, None)  # gone before we could read it: nothing to take
            return None, None
        except OSError as exc:
            return None, f"unreadable: {exc.strerror or exc}"
        if len(payload) != seed.size:
            self.note(seed.path, ready=False)  # still being written after all
            return None, None
        return payload, None

    def packs(self, outgoing: list[Outgoing]) -> Iterator[list[Outgoing]]:
        """Messages bounded by file count and bytes; a file larger than the byte bound goes alone."""
        settings = self.settings
        return packs(outgoing, lambda one: len(one.payload), settings.watch_batch_files, settings.watch_batch_bytes)

    def _send_pack(self, pack: list[Outgoing]) -> bool:
        inputs = [
            RawInput.from_bytes(
                o.payload,
                kind="file",
                ref=o.seed.ref,
                mtime=o.seed.mtime_ns / 1e9,
                arrival_id=o.arrival_id,
                sha256=o.digest,
            )
            for o in pack
        ]
        try:
            self.send(Batch(inputs=inputs))
        except (BrokerError, OSError) as exc:
            log.error("watcher.send_failed", origin=pack[0].seed.ref, files=len(pack), error=str(exc).splitlines()[0])
            self.retry_send_at = time.monotonic() + SEND_RETRY_SECONDS
            return False
        for o in pack:
            log.info("watcher.taken", origin=o.seed.ref, size=o.seed.size, sha256=o.digest, batch=len(pack))
        return True


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _ledger_row(seed: SeedFile, digest: str | None, arrival_key: str | None) -> dict:
    return store.taken_row(seed.ref, seed.size, seed.mtime_ns, digest, arrival_key)


def _refused_arrival(seed: SeedFile) -> store.Arrival:
    return store.Arrival(
        key=file_arrival_id(seed.ref, f"{seed.size}:{seed.mtime_ns}") + ":0",
        kind="file",
        ref=seed.ref,
        entry_id=None,
        seen_at=datetime.now(UTC),
    )


def _read_or_none(seed: SeedFile | None) -> bytes | None:
    if seed is None:
        return None
    try:
        return seed.path.read_bytes()
    except OSError:
        return None
