"""The seeds folder's inotify events, read straight from the kernel on one thread, as the watcher's hints.

watchdog's inotify observer passes each event through four threads and three queues (its reader,
a move grouper that searches a delayed queue for every rename, an emitter, a dispatcher), about
0.2 ms of CPU an event, most of the watcher's own cost under a burst. The watcher needs none of
that: a rename within the folder is complete at its destination and one moved out needs nothing,
so no pairing of moves is needed. This reader turns each kernel event into a hint at once, in the
kernel's order (which `ingest wait`'s barrier relies on), and hears a queue overflow as the kernel
says it, not from a log line.

watchdog stays for polling (`watch_polling`) and for platforms without inotify.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import structlog
from inotify_simple import INotify, flags

log = structlog.get_logger(__name__)

CREATE, MODIFY, CLOSE_WRITE = int(flags.CREATE), int(flags.MODIFY), int(flags.CLOSE_WRITE)
MOVED_FROM, MOVED_TO = int(flags.MOVED_FROM), int(flags.MOVED_TO)
Q_OVERFLOW, IGNORED, ISDIR = int(flags.Q_OVERFLOW), int(flags.IGNORED), int(flags.ISDIR)
# What says where to look; not opens or reads (our own reads would wake us), not deletions.
WATCH_MASK = CREATE | MODIFY | CLOSE_WRITE | MOVED_FROM | MOVED_TO | int(flags.DONT_FOLLOW)
READ_TIMEOUT_MS = 250  # how soon a stop request is noticed while no event comes


class InotifyEvents:
    """Watches `root` and every folder under it, started, stopped and joined as a watchdog observer
    is; puts ("settle" | "ready" | "dir", Path), ("barrier", name) and ("overflow", None or why) hints on
    `hints`, as watchdog's relay did."""

    def __init__(self, root: Path, hints: queue.SimpleQueue, barrier_prefix: str) -> None:
        self.root = root
        self.hints = hints
        self.barrier_prefix = barrier_prefix
        self.inotify = INotify()
        self.folders: dict[int, Path] = {}  # watch descriptor -> the folder it watches
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="inotify", daemon=True)
        self.watch_tree(root)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def join(self) -> None:
        self.thread.join()
        self.inotify.close()

    # -- watches ---------------------------------------------------------------------------------

    def watch_tree(self, top: Path) -> None:
        """Watch `top` and every folder under it (a folder added twice keeps its one watch)."""
        self.watch(top)
        for folder, subfolders, _files in os.walk(top):
            for name in subfolders:
                self.watch(Path(folder) / name)

    def watch(self, folder: Path) -> None:
        try:
            self.folders[self.inotify.add_watch(folder, WATCH_MASK)] = folder
        except FileNotFoundError:
            pass  # gone already: nothing there to watch
        except OSError as exc:
            # Most often the user's watch limit (fs.inotify.max_user_watches): the re-scan still
            # finds what lands there, only later.
            log.warning("watcher.folder_unwatched", folder=str(folder), error=exc.strerror or str(exc))

    def unwatch_tree(self, top: Path) -> None:
        """A folder moved away: its watches (and its subfolders') would report it at its old place."""
        for wd, folder in list(self.folders.items()):
            if folder == top or top in folder.parents:
                del self.folders[wd]
                try:
                    self.inotify.rm_watch(wd)
                except OSError:
                    pass  # the kernel dropped it already (the folder deleted)

    # -- events ----------------------------------------------------------------------------------

    def _run(self) -> None:
        read = self.inotify.read
        while not self.stopping.is_set():
            for event in read(timeout=READ_TIMEOUT_MS):
                try:
                    self.handle(event.wd, event.mask, event.name)
                except Exception as exc:  # noqa: BLE001 - this thread must outlive any one event
                    # Taken as lost events (said in the watcher's line): the folder is walked, nothing is missed.
                    self.hints.put(("overflow", f"an event could not be read ({type(exc).__name__}: {exc})"))

    def handle(self, wd: int, mask: int, name: str) -> None:
        if mask & Q_OVERFLOW:
            self.hints.put(("overflow", None))
            self.watch_tree(self.root)  # folders made while events were lost have no watch yet
            return
        if mask & IGNORED:
            self.folders.pop(wd, None)  # the folder was deleted, or we removed its watch
            return
        folder = self.folders.get(wd)
        if folder is None or not name:
            return  # a watch removed a moment ago; or an event about a watched folder itself
        path = folder / name
        if mask & ISDIR:
            self.handle_folder(mask, path)
        elif mask & (MOVED_TO | CLOSE_WRITE):
            # Moved into place (from within the folder or from outside it), or closed after writing.
            self.hints.put(("ready", path))
        elif mask & CREATE:
            if name.startswith(self.barrier_prefix):
                self.hints.put(("barrier", name))
            else:
                self.hints.put(("settle", path))
        elif mask & MODIFY:
            self.hints.put(("settle", path))
        # MOVED_FROM of a file: moved away, or renamed within (its MOVED_TO follows): nothing to take.

    def handle_folder(self, mask: int, path: Path) -> None:
        if mask & MOVED_FROM:
            self.unwatch_tree(path)
        elif mask & (CREATE | MOVED_TO):
            # Watched first, then walked (by the watcher, on the hint): a file landing in between is
            # both seen by the walk and heard as an event, and taken once.
            self.watch_tree(path)
            self.hints.put(("dir", path))
