"""The watcher in-process, on a real folder, store and Redis: how it hears the folder, and what it
does when the kernel drops events."""

from __future__ import annotations

import os
import queue
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from shared.settings import Settings
from tests.conftest import wait_until
from worker import broker
from worker.cli_common import send, sending_app
from worker.inotify_events import InotifyEvents
from worker.watcher import Watcher

MAX_QUEUED_EVENTS = Path("/proc/sys/fs/inotify/max_queued_events")


@contextmanager
def inotify_queue_limit(events: int):
    """inotify instances made meanwhile hold at most `events` events (the kernel reads the limit
    when an instance is made); restored at once after, for everything else on the machine."""
    if not os.access(MAX_QUEUED_EVENTS, os.W_OK):
        pytest.skip("setting fs.inotify.max_queued_events needs root")
    before = MAX_QUEUED_EVENTS.read_text()
    MAX_QUEUED_EVENTS.write_text(str(events))
    try:
        yield
    finally:
        MAX_QUEUED_EVENTS.write_text(before)


def hints_until(hints: queue.SimpleQueue, wanted, what: str, timeout: float = 10.0) -> list:
    """Hints read until one satisfies `wanted`; fails at the deadline."""
    seen: list = []
    deadline = time.monotonic() + timeout
    while not any(map(wanted, seen)):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; heard {seen}")
        try:
            seen.append(hints.get(timeout=0.1))
        except queue.Empty:
            pass
    return seen


@pytest.fixture
def heard(tmp_path):
    """A real inotify reader on tmp_path/seeds, and the hints it puts."""
    seeds = tmp_path / "seeds"
    (seeds / "old").mkdir(parents=True)
    hints: queue.SimpleQueue = queue.SimpleQueue()
    events = InotifyEvents(seeds, hints, ".ingest-wait-")
    events.start()
    yield seeds, hints
    events.stop()
    events.join()


def test_each_kind_of_arrival_is_heard_as_the_watcher_needs_it(heard, tmp_path):
    seeds, hints = heard
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "moved.txt").write_text("moved in")
    os.rename(staging / "moved.txt", seeds / "moved.txt")  # from outside: complete, no close follows
    (seeds / ".part").write_text("renamed within")
    os.rename(seeds / ".part", seeds / "old" / "renamed.txt")  # into a folder that was there at the start
    with open(seeds / "written.txt", "w") as file:
        file.write("written")
    (seeds / ".ingest-wait-1").touch()
    seen = hints_until(hints, lambda hint: hint == ("barrier", ".ingest-wait-1"), "the barrier")
    assert seen.index(("ready", seeds / "moved.txt")) < seen.index(("ready", seeds / "old" / "renamed.txt"))
    assert ("settle", seeds / "written.txt") in seen and ("ready", seeds / "written.txt") in seen
    assert seen.count(("ready", seeds / ".part")) == 1  # closed after writing; moving it away says nothing


def test_folders_made_moved_in_renamed_and_moved_away_are_followed(heard, tmp_path):
    """A folder is watched before its "dir" hint is put (the watcher walks it on that hint, so what
    landed before the watch is taken too): a file written after the hint is heard as an event."""
    seeds, hints = heard
    (seeds / "made").mkdir()
    hints_until(hints, lambda hint: hint == ("dir", seeds / "made"), "the new folder")
    (seeds / "made" / "a.txt").write_text("a")
    hints_until(hints, lambda hint: hint == ("ready", seeds / "made" / "a.txt"), "a file in it")

    outside = tmp_path / "outside"
    (outside / "tree" / "deeper").mkdir(parents=True)
    (outside / "tree" / "deeper" / "b.txt").write_text("b")  # there before: found by the walk
    os.rename(outside / "tree", seeds / "tree")
    hints_until(hints, lambda hint: hint == ("dir", seeds / "tree"), "the folder moved in")
    (seeds / "tree" / "deeper" / "c.txt").write_text("c")  # its subfolder is watched too
    hints_until(hints, lambda hint: hint == ("ready", seeds / "tree" / "deeper" / "c.txt"), "a file in it")

    os.rename(seeds / "tree", seeds / "renamed")
    hints_until(hints, lambda hint: hint == ("dir", seeds / "renamed"), "the renamed folder")
    (seeds / "renamed" / "deeper" / "d.txt").write_text("d")  # reported at its new place, not its old
    hints_until(hints, lambda hint: hint == ("ready", seeds / "renamed" / "deeper" / "d.txt"), "a file in it")

    os.rename(seeds / "renamed", outside / "away")
    (outside / "away" / "deeper" / "e.txt").write_text("e")  # no longer ours: nothing heard of it
    (seeds / "last.txt").write_text("last")
    seen = hints_until(hints, lambda hint: hint == ("ready", seeds / "last.txt"), "the last file")
    assert not [hint for hint in seen if "e.txt" in str(hint[1])]


class RunningWatcher:
    """A real Watcher on tmp_path/seeds, a real store and Redis, run on a thread: what it sent and
    every state it reported are recorded."""

    def __init__(self, tmp_path: Path, redis_url: str, queue_idle: bool = True, **settings) -> None:
        from shared.schema import upgrade_schema

        self.settings = Settings(
            _env_file=None, seeds_dir=tmp_path / "seeds", data_dir=tmp_path / "data", redis_url=redis_url, **settings
        )
        self.settings.seeds_dir.mkdir(exist_ok=True)
        upgrade_schema(self.settings.store_url)
        client = redis.Redis.from_url(redis_url)
        self.app = sending_app(redis_url)
        self.states: list[tuple[int, bool]] = []
        self.sent: list[str] = []
        self.watcher = Watcher(
            self.settings,
            send=self.send,
            queue_idle=lambda: queue_idle,
            report=lambda waiting, walking: self.states.append((waiting, walking)),
            acknowledge=lambda name, waiting, walking: broker.acknowledge_barrier(client, name, waiting, walking),
        )
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.watcher.run, args=(self.stopping,), daemon=True)

    def send(self, batch) -> None:
        send(self.app, batch)
        self.sent.extend(raw.ref for raw in batch.inputs)

    def settled(self) -> bool:
        return bool(self.states) and self.states[-1] == (0, False)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)


def test_an_inotify_overflow_starts_a_walk_of_the_folder_at_once(tmp_path, clean_redis):
    """The kernel's event queue overflows (here: a queue of one event, and a rename makes two). The
    watcher takes it as lost events and walks the folder at once, not at the next periodic re-scan an
    hour away, and so takes the file whose events were lost; the state says a walk is on until a walk
    begun after the overflow has ended, so `ingest wait` never calls the folder settled meanwhile."""
    running = RunningWatcher(tmp_path, clean_redis, watch_rescan_seconds=3600)
    watcher, seeds = running.watcher, running.settings.seeds_dir
    try:
        with inotify_queue_limit(1):
            running.thread.start()
            wait_until(lambda: running.states, 30, "the watcher to start")
        wait_until(running.settled, 30, "the first walk to end")
        assert watcher.overflows_walked == 0
        (seeds / ".lost.txt.tmp").write_text("its events were lost")
        os.rename(seeds / ".lost.txt.tmp", seeds / "lost.txt")
        wait_until(lambda: watcher.overflows >= 1, 10, "the overflow to be heard")
        wait_until(lambda: watcher.overflows_walked == watcher.overflows, 10, "a walk begun after it to end")
        wait_until(lambda: "lost.txt" in running.sent, 10, "the file to be taken by the walk")
        wait_until(running.settled, 10, "the state to say the folder is settled again")
    finally:
        running.stop()


def test_a_walk_that_read_the_ledger_before_a_file_was_taken_does_not_hold_it_again(tmp_path, clean_redis):
    """A re-scan reads the ledger, then walks: a file taken in between is untaken by that walk's
    account. It must not be held again for the settle time (a minute here), which `ingest wait`
    would count as pending. Walks run back to back here, so files keep landing mid-walk."""
    staging = tmp_path / "staging"
    staging.mkdir()
    running = RunningWatcher(
        tmp_path, clean_redis, queue_idle=False, watch_settle_seconds=60, watch_rescan_seconds=0.05
    )
    seeds = running.settings.seeds_dir
    running.thread.start()
    try:
        wait_until(running.settled, 30, "the first walk to end")
        for number in range(40):
            (staging / f"{number}.txt").write_text(f"file {number}")
            os.rename(staging / f"{number}.txt", seeds / f"{number}.txt")
            time.sleep(0.02)  # spread over many walks
        wait_until(lambda: len(running.sent) == 40, 10, "every file to be taken")
        wait_until(lambda: not running.watcher.pending, 10, "no taken file held again")
    finally:
        running.stop()
