"""Where a timed window's CPU goes, process by process: the figure that stays comparable when the
shared machine's speed moves between runs (a rate alone cannot say which process grew)."""

from __future__ import annotations

import resource
from collections import Counter

import psutil

from bench.roles import role_of
from bench.stats import median, runs_text

ROLES_IN_ORDER = ["worker pool process", "watcher", "wait", "redis", "worker", "beat", "supervisor"]
CPU_HEADER = ["process", "CPU s", "ms an item", "share", "runs"]


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class CpuWindow:
    """CPU seconds by role between `__enter__` and `__exit__`: every process under `ingest up`, the
    Redis server the bench runs, and the bench's own children that ended inside the window (the
    `ingest wait` it ran). PostgreSQL's server is not ours to count and is left out."""

    def __init__(self, up_pid: int) -> None:
        self.up_pid = up_pid
        self.by_role: Counter = Counter()

    def _processes(self) -> list[psutil.Process]:
        up = psutil.Process(self.up_pid)
        bench_children = psutil.Process().children()
        redis = [child for child in bench_children if child.name().startswith("redis-server")]
        return [up, *up.children(recursive=True), *redis]

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        seen = {}
        for process in self._processes():
            try:
                role = "redis" if process.name().startswith("redis-server") else role_of(process, self.up_pid)
                if role is not None:
                    seen[process.pid] = (role, _cpu_seconds(process))
            except psutil.Error:
                continue  # ended between the listing and the reading
        return seen

    @staticmethod
    def _ended_children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> CpuWindow:
        self.before, self.children_before = self._snapshot(), self._ended_children()
        return self

    def __exit__(self, *_exc) -> None:
        for pid, (role, seconds) in self._snapshot().items():
            self.by_role[role] += seconds - self.before.get(pid, (role, 0.0))[1]
        self.by_role["wait"] += self._ended_children() - self.children_before


def cpu_rows(windows: list[Counter], items: int) -> list[list[str]]:
    """Each role's CPU over the runs' timed windows, the median, per item and as a share of all."""
    roles = [role for role in ROLES_IN_ORDER if any(cpu[role] for cpu in windows)]
    roles += sorted({role for cpu in windows for role in cpu} - set(roles))
    total = median([sum(cpu.values()) for cpu in windows])
    rows = []
    for role in roles:
        seconds = [cpu[role] for cpu in windows]
        share = f"{median(seconds) / total:.0%}" if total else "-"
        rows.append(
            [role, f"{median(seconds):.2f}", f"{median(seconds) / items * 1000:.3f}", share, runs_text(seconds, 2)]
        )
    return rows + [["all", f"{total:.2f}", f"{total / items * 1000:.3f}", "100%", ""]]
