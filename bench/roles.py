"""Which `ingest up` process a psutil process is, by its command line: what the memory and CPU
figures are reported by."""

from __future__ import annotations

import psutil

ROLES = {"up": "supervisor", "watch": "watcher", "beat": "beat", "worker": "worker"}


def role_of(process: psutil.Process, supervisor_pid: int) -> str | None:
    try:
        argv = process.cmdline()
        parent = process.ppid()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if "worker.cli" not in argv:
        return None
    command = argv[argv.index("worker.cli") + 1] if argv.index("worker.cli") + 1 < len(argv) else ""
    role = ROLES.get(command)
    if role == "worker" and parent != supervisor_pid:
        return "worker pool process"  # forked by the worker's main process: the same command line
    return role
