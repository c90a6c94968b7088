"""`ingest logs`: JSON log lines read back as readable lines, filtered by level and event."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import structlog

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
FOLLOW_POLL_SECONDS = 0.25
# `docker compose logs` puts "service-1  | " before each line, and with --timestamps a time after it.
COMPOSE_PREFIX = re.compile(
    r"^(?P<service>[\w.-]+)\s*\|\s(?:\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-][\d:]+)\s)?(?P<rest>.*)$", re.DOTALL
)


def wanted(record: dict, level: str | None, event: str | None) -> bool:
    """At or above `level`; `event` exact or a glob such as `feed.*`."""
    if level and LEVELS.get(str(record.get("level", "")).lower(), 0) < LEVELS[level]:
        return False
    return not event or fnmatch.fnmatchcase(str(record.get("event", "")), event)


def parsed(line: str) -> dict | None:
    """A JSON log line as a dict; one that `docker compose logs` prefixed gets its `service` field."""
    service = None
    prefixed = COMPOSE_PREFIX.match(line) if not line.lstrip().startswith("{") else None
    if prefixed is not None:
        service, line = prefixed["service"], prefixed["rest"]
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    return record | {"service": service} if service else record


def follow(path: Path) -> Iterator[str]:
    """Lines appended to `path`, across rotations (the file replaced by a new one), until interrupted."""
    handle, inode = _open_at_end(path)
    while True:
        line = handle.readline() if handle else ""
        if line:
            yield line
            continue
        time.sleep(FOLLOW_POLL_SECONDS)
        current = path.stat().st_ino if path.exists() else None
        if current != inode:
            if handle:
                handle.close()
            handle, inode = (open(path, encoding="utf-8", errors="replace"), current) if current else (None, None)


def _open_at_end(path: Path) -> tuple[IO[str] | None, int | None]:
    if not path.exists():
        return None, None
    handle = open(path, encoding="utf-8", errors="replace")
    handle.seek(0, os.SEEK_END)
    return handle, os.fstat(handle.fileno()).st_ino


def show(lines, level: str | None, event: str | None, colors: bool, write) -> int:
    """Write the wanted lines readably; returns how many were shown."""
    renderer = structlog.dev.ConsoleRenderer(colors=colors)
    shown = 0
    for line in lines:
        record = parsed(line)
        if record is None:
            if not level and not event and line.strip():
                write(line.rstrip("\n"))
            continue
        if wanted(record, level, event):
            write(renderer(None, "", record))
            shown += 1
    return shown
