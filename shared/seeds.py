"""The seeds folder's rules: which files are inputs, and a scan of them that follows no link."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~")


@dataclass(frozen=True)
class SeedFile:
    ref: str  # relative to the seeds folder, with forward slashes
    path: Path
    size: int
    mtime_ns: int

    @property
    def signature(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


def is_ignored(ref: str) -> bool:
    """Hidden files and folders, and the names editors and downloaders use while still writing."""
    # On the string (a ref is relative, with forward slashes): asked for every event of a burst.
    parts = [part for part in ref.split("/") if part and part != "."]
    if any(part.startswith(".") for part in parts):
        return True
    return bool(parts) and parts[-1].endswith(IGNORED_SUFFIXES)


def _absolute_root(root: str) -> str:
    # A relative root follows the working folder, so only an absolute one is remembered.
    return _normalised(root) if os.path.isabs(root) else os.path.abspath(root)


@lru_cache(maxsize=8)
def _normalised(root: str) -> str:
    return os.path.normpath(root)


def relative_ref(root: Path, path: Path) -> str | None:
    """`path` relative to `root` with forward slashes ("." for the root itself), or None when it lies
    outside. On strings, not Path objects: the watcher asks this for every event of a burst."""
    full, base = os.path.abspath(path), _absolute_root(os.fspath(root))
    if full == base:
        return "."
    prefix = base if base.endswith(os.sep) else base + os.sep
    if not full.startswith(prefix):
        return None
    return full[len(prefix) :].replace(os.sep, "/")


def seed_file(root: Path, path: Path) -> SeedFile | None:
    """The input at `path`, or None when it is not one: ignored, gone, a link, not a regular file."""
    ref = relative_ref(root, path)
    if ref is None or ref == "." or is_ignored(ref):
        return None
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    # Links are never followed: one pointing out of the folder would read what it must not.
    if not stat.S_ISREG(info.st_mode):
        return None
    return SeedFile(ref=ref, path=Path(path), size=info.st_size, mtime_ns=info.st_mtime_ns)


def scan(root: Path, under: Path | None = None) -> Iterator[SeedFile]:
    """Every input below `under` (default: the whole folder), folder by folder in name order;
    symlinked folders are not entered."""
    for ref, path, size, mtime_ns in scan_entries(root, under):
        yield SeedFile(ref, Path(path), size, mtime_ns)


def scan_entries(root: Path, under: Path | None = None) -> Iterator[tuple[str, str, int, int]]:
    """(ref, path, size, mtime_ns) of every input below `under`: scan() without building objects,
    for the re-scan that compares 100,000 files with the ledger (one stat each, from os.scandir)."""
    start = Path(under or root)
    base = relative_ref(root, start)
    if base is None or (base != "." and any(part.startswith(".") for part in PurePosixPath(base).parts)):
        return
    yield from _walk(str(start), "" if base == "." else f"{base}/")


def _walk(folder: str, prefix: str) -> Iterator[tuple[str, str, int, int]]:
    files, subfolders = _folder_inputs(folder, ordered=True)
    for entry, info in files:
        yield prefix + entry.name, entry.path, info.st_size, info.st_mtime_ns
    for subfolder in subfolders:
        yield from _walk(subfolder.path, f"{prefix}{subfolder.name}/")


def _folder_inputs(folder: str, ordered: bool) -> tuple[list[tuple[os.DirEntry, os.stat_result]], list[os.DirEntry]]:
    """One folder's inputs with their stat, and its subfolders to enter, by the folder's rules; the
    listing is read whole and closed before anyone goes deeper."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name) if ordered else list(listing)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return [], []
    files, subfolders = [], []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            subfolders.append(entry)
        elif not entry.name.endswith(IGNORED_SUFFIXES):
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            # Links are never followed: one pointing out of the folder would read what it must not.
            if stat.S_ISREG(info.st_mode):
                files.append((entry, info))
    return files, subfolders


def count_untaken(root: Path, taken: dict[str, tuple[int, int]]) -> int:
    """How many inputs in the folder are not in `taken` (ref -> (size, mtime_ns)) as they are now:
    scan_entries' rules, without its order or its tuples (`ingest wait` asks this of folders of
    100,000 files, where they cost as much as the one stat a file)."""
    return _count_untaken(os.fspath(root), "", taken)


def _count_untaken(folder: str, prefix: str, taken: dict[str, tuple[int, int]]) -> int:
    files, subfolders = _folder_inputs(folder, ordered=False)
    untaken = sum(1 for entry, info in files if taken.get(prefix + entry.name) != (info.st_size, info.st_mtime_ns))
    return untaken + sum(_count_untaken(sub.path, f"{prefix}{sub.name}/", taken) for sub in subfolders)
