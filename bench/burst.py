"""(a) burst and (e) HTML: many distinct files renamed into seeds/ at once, timed until `ingest wait` returns.

All files are written into staging/ (same filesystem) before the clock starts; `ingest up` is ready
(its probe stored, nothing pending). The clock runs from the first rename to `ingest wait` returning,
`ingest wait` started right after the last rename, as a user would run it. The rate to the last
commit (the newest `items.ingested_at`) is shown beside it: the same burst without `ingest wait`'s
start-up and its two idle readings.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bench import baseline
from bench.corpus import write_articles
from bench.cpu import CPU_HEADER, CpuWindow, cpu_rows
from bench.site import BenchError, Site, flush_redis, move_all, postgres_schema
from bench.stats import Section, median, ratio, runs_text, say
from bench.suite import Context, postgres_url

StoreFactory = Callable[[Path], AbstractContextManager[str | None]]


@dataclass
class BurstRun:
    docs: int
    seconds: float  # first rename -> `ingest wait` returned
    to_last_commit: float  # first rename -> the newest ingested_at
    rename_seconds: float
    problems: Counter
    cpu: Counter  # CPU seconds by process role over the timed window
    paired_baseline: float | None = None  # the no-op baseline's messages/s, measured just before this run

    @property
    def paired_ratio(self) -> float | None:
        return self.rate / self.paired_baseline if self.paired_baseline else None

    @property
    def rate(self) -> float:
        return self.docs / self.seconds

    @property
    def commit_rate(self) -> float:
        return self.docs / self.to_last_commit


@contextmanager
def sqlite_store(_folder: Path) -> Iterator[str | None]:
    yield None  # the site's default: a SQLite file under its data/


def postgres_store(_folder: Path) -> AbstractContextManager[str | None]:
    return postgres_schema(postgres_url())


def timed_burst(site: Site, names: list[str], timeout: float) -> BurstRun:
    """Rename every staged file into seeds/ and wait for the service to be idle; checks every file landed."""
    before = site.counts()
    with CpuWindow(site.up.pid) as cpu:
        first, last = move_all(names, site.staging, site.seeds)
        finished = site.wait_idle(timeout)
    after = site.counts()
    stored = after["items"] - before["items"]
    if stored != len(names) or after["failed"] != before["failed"]:
        raise BenchError(f"{len(names)} files renamed in, {stored} items stored, {after['failed']} failures")
    return BurstRun(
        len(names), finished - first, site.last_commit() - first, last - first, site.log_problems(), cpu.by_role
    )


def burst_once(context: Context, store: StoreFactory, docs: int, seed: int, html_pages: bool) -> BurstRun:
    flush_redis(context.redis_url)
    with tempfile.TemporaryDirectory(dir=context.scratch) as folder, store(Path(folder)) as store_url:
        with Site(Path(folder), context.redis_url, store_url) as site:
            names = write_articles(site.staging, docs, seed, "page" if html_pages else "doc", html_pages)
            site.start(context.options.concurrency)
            return timed_burst(site, names, context.options.timeout)


def repeated(context: Context, label: str, once: Callable[[int], BurstRun]) -> list[BurstRun]:
    runs = []
    for number in range(context.options.runs):
        result = once(number)
        paired = f"; {result.paired_ratio:.2f}x the baseline run just before" if result.paired_ratio else ""
        say(
            f"{label} run {number + 1}: {result.rate:,.0f} docs/s to wait, "
            f"{result.commit_rate:,.0f} to last commit{paired}"
        )
        runs.append(result)
    return runs


def with_paired_baseline(context: Context, burst: Callable[[], BurstRun]) -> BurstRun:
    """A burst with a baseline throughput run just before it, so that its ratio compares two moments
    of one machine, not a burst with a baseline measured minutes earlier."""
    rate = baseline.paired_rate(context)
    return replace(burst(), paired_baseline=rate)


def rows_for(label: str, runs: list[BurstRun], context: Context, unit: str = "docs/s") -> list[list[str]]:
    base = context.baseline.rate if context.baseline else None
    rates, commits = [r.rate for r in runs], [r.commit_rate for r in runs]
    rows = [
        [f"{label}: {unit} to `ingest wait`", f"{median(rates):,.0f}", ratio(median(rates), base), runs_text(rates)],
        [
            f"{label}: {unit} to last commit",
            f"{median(commits):,.0f}",
            ratio(median(commits), base),
            runs_text(commits),
        ],
    ]
    paired = [r.paired_ratio for r in runs if r.paired_ratio]
    if paired and len(paired) == len(runs):
        bases = [r.paired_baseline for r in runs]
        rows.append(
            [
                f"{label}: to `ingest wait`, each run against a baseline run just before it "
                f"(those ran {runs_text(bases)} msg/s)",
                "–",
                f"{median(paired):.2f}x",
                " / ".join(f"{value:.2f}x" for value in paired),
            ]
        )
    return rows


HEADER = ["figure", "median", "vs no-op baseline", "runs"]


def merged_problems(runs: list[BurstRun]) -> Counter:
    total: Counter = Counter()
    for run_ in runs:
        total += run_.problems
    return total


def run(context: Context) -> Section:
    docs = context.options.docs
    section = Section(f"(a) burst: {docs:,} seed-style articles renamed into seeds/ at once")
    sqlite_runs = repeated(
        context,
        "burst sqlite",
        lambda n: with_paired_baseline(context, lambda: burst_once(context, sqlite_store, docs, n, False)),
    )
    rows = rows_for("SQLite", sqlite_runs, context)
    context.burst_rate = median([r.rate for r in sqlite_runs])
    problems = merged_problems(sqlite_runs)
    if postgres_url():
        pg_runs = repeated(context, "burst postgres", lambda n: burst_once(context, postgres_store, docs, n, False))
        rows += rows_for("PostgreSQL", pg_runs, context)
        problems += merged_problems(pg_runs)
        store_note = "SQLite (WAL) and a fresh PostgreSQL schema per run"
    else:
        store_note = "SQLite (WAL); PostgreSQL skipped: set INGEST_BENCH_DATABASE_URL or INGEST_TEST_DATABASE_URL"
    renames = median([r.rename_seconds for r in sqlite_runs]) * 1000
    section.lines += [
        f"`ingest up --concurrency {context.options.concurrency}`, {store_note}; ~3 KB articles, all distinct "
        f"(no near-copies); renaming them all took {renames:.0f} ms. Median of {len(sqlite_runs)} runs.",
        "",
    ]
    section.table(HEADER, rows)
    section.lines += [
        "Where the SQLite bursts' CPU went, over the same window (the worker's pool processes together; "
        "`wait`: `ingest wait`; PostgreSQL's server not counted):",
        "",
    ]
    section.table(CPU_HEADER, cpu_rows([r.cpu for r in sqlite_runs], docs))
    section.problems = problems
    return section


def run_html(context: Context) -> Section:
    pages = context.options.pages
    section = Section(f"(e) HTML: {pages:,} article pages renamed into seeds/ at once")
    runs = repeated(context, "html", lambda n: burst_once(context, sqlite_store, pages, 100 + n, True))
    section.lines += [
        "Pages with a head (title, og:title, og:site_name, author, article:published_time, canonical), a cookie "
        "banner, header and navigation, six to nine paragraphs, a share bar, related links and a footer "
        f"(~5 KB each); SQLite. Median of {len(runs)} runs.",
        "",
    ]
    section.table(HEADER, rows_for("HTML", runs, context, unit="pages/s"))
    section.problems = merged_problems(runs)
    return section
