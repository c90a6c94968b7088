"""Child processes that cannot outlive the process that started them.

A process killed without warning (SIGKILL, the OOM killer) runs no shutdown handler, so a child
it started would run on, orphaned: a redis-server on a data folder, a worker still taking work.
On Linux the kernel can signal the child when its parent dies; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """`preexec_fn` for subprocess.Popen: in the child, before exec, ask for `signum` when the parent dies.

    The kernel means the parent *thread*: start such children from a thread that lives as long as
    the process (the main thread), or they are stopped when that thread ends.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum)
