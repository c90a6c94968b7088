"""(f) Scale: the burst again with 1,000,000 items in the store and 100,000 files in seeds/ and the
ledger; and light load while the watcher re-scans those 100,000 files every 5 s.

The large state is made once (bench/preload.py) into a template SQLite file and the index in Redis;
each run starts on a copy of the template, with the files of earlier runs removed from seeds/ and the
index records of their items dropped, so every run meets the same state. Readiness includes the
watcher's first full scan (the probe file is the last one it walks).

Each scale burst is paired with an empty-store burst run just before it (as (a) runs it, in another
Redis database): the ratio of each pair is taken under the same load from the machine's neighbours,
where (a)'s median, minutes earlier, may have met another.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from redis.connection import parse_url

from bench import light, preload
from bench.burst import BurstRun, burst_once, sqlite_store, timed_burst
from bench.corpus import write_articles
from bench.site import Site, clear_top_level_files, flush_redis, replace_sqlite
from bench.stats import Section, median, ratio, runs_text, say
from bench.suite import Context

RESCAN_SECONDS = 5


class ScaleSite:
    """One folder reused by every run: seeds/preload/ stays, the store is reset from the template."""

    def __init__(self, context: Context, folder: Path) -> None:
        self.context = context
        self.folder = folder
        self.template = folder / "template.db"
        self.seeds = folder / "seeds"

    def build(self) -> None:
        options = self.context.options
        started = time.monotonic()
        flush_redis(self.context.redis_url)
        pool = preload.sentence_pool()
        ledger = preload.write_files(self.seeds, options.scale_files, pool)
        say(f"scale: {len(ledger):,} files written in {time.monotonic() - started:.0f}s")
        preload.fill_store(f"sqlite:///{self.template}", options.scale_items, ledger, pool)
        say(f"scale: {options.scale_items:,} items in the template store after {time.monotonic() - started:.0f}s")
        if options.scale_index:
            preload.fill_index(self.context.redis_url, options.scale_items)
            say(f"scale: index filled after {time.monotonic() - started:.0f}s")

    def fresh(self, env: dict | None = None) -> Site:
        """A site on the preloaded state: the template's store, only the preloaded files in seeds/."""
        clear_top_level_files(self.seeds)
        shutil.rmtree(self.folder / "staging", ignore_errors=True)
        replace_sqlite(self.template, self.folder / "data" / "ingest.db")
        (self.folder / "up.log").unlink(missing_ok=True)
        return Site(self.folder, self.context.redis_url, env=env)

    def forget_new_items(self) -> None:
        options = self.context.options
        added = options.docs + round(options.seconds / options.interval) + 10
        preload.forget_index_above(self.context.redis_url, options.scale_items + 1, options.scale_items + added)


def paired_context(context: Context) -> Context:
    """The same Redis server, database 1: flushing it for an empty-store burst keeps the scale index."""
    parsed = parse_url(context.redis_url)
    base = f"redis://{parsed.get('host', '127.0.0.1')}:{parsed.get('port', 6379)}"
    return dataclasses.replace(context, redis_url=f"{base}/1")


def burst_runs(scale: ScaleSite, context: Context) -> tuple[list[BurstRun], list[BurstRun]]:
    """The scale bursts, and the empty-store burst run just before each."""
    runs, empties = [], []
    for number in range(context.options.runs):
        empties.append(burst_once(paired_context(context), sqlite_store, context.options.docs, 400 + number, False))
        say(f"empty-store burst run {number + 1}: {empties[-1].rate:,.0f} docs/s to wait")
        with scale.fresh() as site:
            names = write_articles(site.staging, context.options.docs, 400 + number)
            site.start(context.options.concurrency)
            runs.append(timed_burst(site, names, context.options.timeout))
        scale.forget_new_items()
        say(f"scale burst run {number + 1}: {runs[-1].rate:,.0f} docs/s to wait, {runs[-1].commit_rate:,.0f} to commit")
    return runs, empties


def light_runs(scale: ScaleSite, context: Context) -> list[light.LightRun]:
    runs = []
    for number in range(context.options.runs):
        with scale.fresh(env={"INGEST_WATCH_RESCAN_SECONDS": str(RESCAN_SECONDS)}) as site:
            site.start(context.options.concurrency)
            runs.append(light.LightRun(light.measure(site, context, "moved", 500 + number), site.log_problems()))
        scale.forget_new_items()
        say(f"scale light run {number + 1}: p50 {runs[-1].p50:.1f} ms, p99 {runs[-1].p99:.1f} ms")
    return runs


def index_note(options) -> str:
    if options.scale_index:
        return f"The near-duplicate index in Redis holds {options.scale_items:,} synthetic items too."
    return (
        "The near-duplicate index in Redis starts empty (its cost at 1M items is bench/dedup_bench.py's; "
        "--no-scale-index leaves it so; the default fills it)."
    )


def run(context: Context) -> Section:
    options = context.options
    section = Section(
        f"(f) scale: {options.scale_items:,} items in the store, {options.scale_files:,} files in seeds/ and the ledger"
    )
    with tempfile.TemporaryDirectory(dir=context.scratch) as folder:
        scale = ScaleSite(context, Path(folder))
        scale.build()
        bursts, empties = burst_runs(scale, context)
        lights = light_runs(scale, context)
    rates, commits = [r.rate for r in bursts], [r.commit_rate for r in bursts]
    empty_rates = [r.rate for r in empties]
    slowdowns = [empty / rate for empty, rate in zip(empty_rates, rates)]
    p50s, p99s = [r.p50 for r in lights], [r.p99 for r in lights]
    empty = context.burst_rate
    base = context.baseline
    section.lines += [
        f"Burst: {options.docs:,} articles as in (a), SQLite; each run paired with an empty-store burst run "
        f"just before it, as in (a) (median of each pair's slowdown below), and compared with (a)'s median "
        f"({'%.0f docs/s' % empty if empty else 'not run: select burst too'}). Light load: files moved in as in (c) "
        f"with INGEST_WATCH_RESCAN_SECONDS={RESCAN_SECONDS}, so the watcher walks all {options.scale_files:,} files "
        f"and loads the ledger about every {RESCAN_SECONDS} s of the window. {index_note(options)} "
        f"Median of {options.runs} runs.",
        "",
    ]
    section.table(
        ["figure", "median", "vs empty store", "vs no-op baseline", "runs"],
        [
            [
                "burst docs/s to `ingest wait`",
                f"{median(rates):,.0f}",
                ratio(median(rates), empty),
                ratio(median(rates), base and base.rate),
                runs_text(rates),
            ],
            [
                "paired empty-store burst docs/s",
                f"{median(empty_rates):,.0f}",
                f"scale {median(slowdowns):.2f}x slower",
                ratio(median(empty_rates), base and base.rate),
                runs_text(empty_rates) + " (slowdowns " + " / ".join(f"{x:.2f}x" for x in slowdowns) + ")",
            ],
            [
                "burst docs/s to last commit",
                f"{median(commits):,.0f}",
                "–",
                ratio(median(commits), base and base.rate),
                runs_text(commits),
            ],
            [
                "light load p50 ms, re-scans running",
                f"{median(p50s):.1f}",
                "–",
                ratio(median(p50s), base and base.latency_p50_ms),
                runs_text(p50s, 1),
            ],
            [
                "light load p99 ms, re-scans running",
                f"{median(p99s):.1f}",
                "–",
                ratio(median(p99s), base and base.latency_p99_ms),
                runs_text(p99s, 1),
            ],
        ],
    )
    problems = Counter()
    for one in [*bursts, *empties, *lights]:
        problems += one.problems
    section.problems = problems
    return section
