"""(g) Memory: the resident set of every process of `ingest up` over a 100,000-document burst.

A sampler thread walks the process tree of `ingest up` every 0.5 s (psutil) and tells each process's
role from its command line: the supervisor (`worker.cli up`), the watcher (`… watch`), the scheduler
(`… beat`), the worker's main process (`… worker`, a child of the supervisor) and its prefork pool
processes (children of the worker's main process, same command line). After the run, the store says
when the 10,000th and the 100,000th document were stored (`items.ingested_at` in order), and each
process's RSS is read from the sample nearest each moment. The acceptance: at most 250 MB per worker
process, and flat (within 10 %) from the 10,000th to the 100,000th document.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.burst import timed_burst
from bench.corpus import write_articles
from bench.roles import role_of
from bench.site import Site, flush_redis
from bench.stats import Section, median, say
from bench.suite import Context

LIMIT_MB = 250
FLAT_WITHIN = 0.10


@dataclass
class Series:
    role: str
    pid: int
    samples: list[tuple[float, float]] = field(default_factory=list)  # (wall time, RSS MB)

    @property
    def peak(self) -> float:
        return max(rss for _, rss in self.samples)

    def at(self, moment: float) -> float | None:
        """RSS of the sample nearest `moment`."""
        if not self.samples:
            return None
        return min(self.samples, key=lambda sample: abs(sample[0] - moment))[1]


class Sampler:
    """Samples the RSS of every process below `ingest up` on a thread, until stopped."""

    def __init__(self, supervisor_pid: int, period: float) -> None:
        self.supervisor = psutil.Process(supervisor_pid)
        self.period = period
        self.series: dict[int, Series] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period)  # a sampling period, not a stand-in for a condition

    def sample(self) -> None:
        now = time.time()
        try:
            processes = [self.supervisor, *self.supervisor.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            role = "supervisor" if process.pid == self.supervisor.pid else role_of(process, self.supervisor.pid)
            if role is None:
                continue
            try:
                rss = process.memory_info().rss / 1e6
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            self.series.setdefault(process.pid, Series(role, process.pid)).samples.append((now, rss))


@dataclass
class ProcessFigures:
    slot: str  # role, numbered when a role has several processes (pool processes)
    peak: float
    early: float | None
    late: float | None


def figures(series: dict[int, Series], early: float, late: float) -> list[ProcessFigures]:
    by_role: dict[str, list[Series]] = defaultdict(list)
    for one in sorted(series.values(), key=lambda s: s.samples[0][0]):
        by_role[one.role].append(one)
    found = []
    for role in ("supervisor", "watcher", "beat", "worker", "worker pool process"):
        for number, one in enumerate(by_role.get(role, []), 1):
            slot = f"{role} {number}" if len(by_role[role]) > 1 or role.endswith("process") else role
            found.append(ProcessFigures(slot, one.peak, one.at(early), one.at(late)))
    return found


def memory_once(context: Context, docs: int, seed: int) -> tuple[list[ProcessFigures], float]:
    flush_redis(context.redis_url)
    with tempfile.TemporaryDirectory(dir=context.scratch) as folder, Site(Path(folder), context.redis_url) as site:
        names = write_articles(site.staging, docs, seed, prefix="mem")
        say(f"memory: {docs:,} files staged")
        site.start(context.options.concurrency)
        with Sampler(site.up.pid, context.options.sample_seconds) as sampler:
            burst = timed_burst(site, names, context.options.timeout)
        # The probe is item 1: the n-th document of the burst is item n + 1.
        early = site.nth_ingested_at(max(1, docs // 10) + 1)
        late = site.nth_ingested_at(docs + 1)
        return figures(sampler.series, early, late), burst.rate


def verdict(row: ProcessFigures) -> str:
    if not row.slot.startswith("worker"):
        return ""
    growth = (row.late - row.early) / row.early if row.early and row.late else float("nan")
    within = row.peak <= LIMIT_MB and abs(growth) <= FLAT_WITHIN
    return f"{growth:+.1%} {'ok' if within else 'FAILS'}"


def run(context: Context) -> Section:
    docs = context.options.memory_docs
    per_run: list[list[ProcessFigures]] = []
    rates = []
    for number in range(context.options.runs):
        rows, rate = memory_once(context, docs, 600 + number)
        per_run.append(rows)
        rates.append(rate)
        say(f"memory run {number + 1}: " + ", ".join(f"{r.slot} peak {r.peak:.0f} MB" for r in rows))
    slots = [row.slot for row in per_run[0]]
    section = Section(f"(g) memory: RSS of each process of `ingest up` over a {docs:,}-document burst")
    early_label = f"{max(1, docs // 10):,}th"
    reference = (
        f" (the no-op worker's largest process: {context.baseline.worker_rss_mb:.0f} MB)" if context.baseline else ""
    )
    section.lines += [
        f"psutil every {context.options.sample_seconds:g} s over the process tree of `ingest up --concurrency "
        f"{context.options.concurrency}`, roles from the command line; SQLite; the burst ran at "
        f"{median(rates):,.0f} docs/s. RSS at the {early_label} and the {docs:,}th stored document: the sample nearest "
        f"that `ingested_at`. Acceptance for worker processes: peak ≤ {LIMIT_MB} MB and within "
        f"{FLAT_WITHIN:.0%} from the one to the other{reference}. Median of {len(per_run)} runs per process slot.",
        "",
    ]
    rows = []
    for slot in slots:
        matching = [row for run_rows in per_run for row in run_rows if row.slot == slot]
        merged = ProcessFigures(
            slot,
            median([r.peak for r in matching]),
            median([r.early for r in matching if r.early is not None]),
            median([r.late for r in matching if r.late is not None]),
        )
        rows.append([slot, f"{merged.peak:.0f}", f"{merged.early:.0f}", f"{merged.late:.0f}", verdict(merged)])
    section.table(
        ["process", "peak RSS MB", f"RSS at {early_label} MB", f"RSS at {docs:,}th MB", "growth, verdict"], rows
    )
    return section
