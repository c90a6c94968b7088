"""Child processes that cannot outlive the process that started them.

A process killed without warning (SIGKILL, the OOM killer) runs no shutdown handler, so a child
it started would run on, orphaned: a redis-server on a data folder, a worker still taking work.
On Linux the kernel can signal the child when its parent dies; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen, made in the parent: in the child, before exec, it asks
    for `signum` when the parent dies, and takes it at once if the parent died before it asked
    (seen: `ingest up` killed while starting its watcher left the watcher waiting for ever).

    The kernel means the parent *thread*: start such children from a thread that lives as long as
    the process (the main thread), or they are stopped when that thread ends.

    Everything is looked up here, in the parent: the child of a process with threads may run only
    what takes no lock between its fork and its exec, and loading a library (dlopen) takes the
    loader's lock, which another thread may have held at the fork, for ever in the child.
    """
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def arrange() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:  # gone between the fork and the prctl: no signal would ever come
            os.kill(os.getpid(), signum)

    return arrange
