"""(c) Light load: one file every 100 ms for 60 s, latency from its rename to its committed row.

Two ways files arrive, each its own series of runs:
- moved in: written complete into staging/ (outside seeds/, same filesystem), then `os.rename`d in;
- hidden temp: written as `seeds/.name.txt.tmp` (ignored: hidden, and a temporary suffix), then
  renamed to `seeds/name.txt` within the folder, as editors and downloaders do.

The wall-clock time of each rename is kept in memory; the store is read only once the window is over
and `ingest wait` returned: each file's origin (`origins.ref`, its path under seeds/) joined to its
item's `ingested_at` (UTC, set inside the insert transaction). Nothing polls the store per file.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.corpus import Writer, seed_article, write_articles
from bench.site import BenchError, Site, flush_redis
from bench.stats import Section, median, percentile, ratio, runs_text, say
from bench.suite import Context

VARIANTS = {"moved": "moved in from staging/", "hidden": "hidden temp file renamed within seeds/"}


@dataclass
class LightRun:
    latencies_ms: list[float]
    problems: Counter

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


def paced(count: int, interval: float):
    """Yields at t0, t0 + interval, …: a fixed arrival rate, however long each step took."""
    start = time.monotonic()
    for number in range(count):
        time.sleep(max(0.0, start + number * interval - time.monotonic()))
        yield number


def drop_moved(site: Site, names: list[str], interval: float) -> dict[str, float]:
    renamed = {}
    for number in paced(len(names), interval):
        name = names[number]
        os.rename(site.staging / name, site.seeds / name)
        renamed[name] = time.time()
    return renamed


def drop_hidden(site: Site, texts: dict[str, str], interval: float) -> dict[str, float]:
    renamed = {}
    names = list(texts)
    for number in paced(len(names), interval):
        name = names[number]
        hidden = site.seeds / f".{name}.tmp"
        hidden.write_text(texts[name], encoding="utf-8")
        os.rename(hidden, site.seeds / name)
        renamed[name] = time.time()
    return renamed


def latencies(site: Site, renamed: dict[str, float], timeout: float) -> list[float]:
    site.wait_idle(timeout)
    landed = site.origins_with_refs(list(renamed))
    missing = len(renamed) - len(landed)
    if missing:
        raise BenchError(f"{missing} of {len(renamed)} light-load files have no stored item")
    return [(landed[ref].timestamp() - at) * 1000 for ref, at in renamed.items()]


def measure(site: Site, context: Context, variant: str, seed: int) -> list[float]:
    """One window of light load on a running, idle site; the latency of each file in ms."""
    count = max(1, round(context.options.seconds / context.options.interval))
    if variant == "moved":
        names = write_articles(site.staging, count, seed, prefix="light")
        renamed = drop_moved(site, names, context.options.interval)
    else:
        writer = Writer(seed)
        texts = {f"light-{seed}-{n:06d}.txt": seed_article(writer.story(n)) for n in range(count)}
        renamed = drop_hidden(site, texts, context.options.interval)
    return latencies(site, renamed, context.options.timeout)


def light_once(context: Context, variant: str, seed: int) -> LightRun:
    flush_redis(context.redis_url)
    with tempfile.TemporaryDirectory(dir=context.scratch) as folder, Site(Path(folder), context.redis_url) as site:
        site.start(context.options.concurrency)
        found = measure(site, context, variant, seed)
        return LightRun(found, site.log_problems())


def rows_for(label: str, runs: list[LightRun], context: Context) -> list[list[str]]:
    base = context.baseline
    p50s, p99s = [r.p50 for r in runs], [r.p99 for r in runs]
    return [
        [
            f"{label}: p50 ms",
            f"{median(p50s):.1f}",
            ratio(median(p50s), base and base.latency_p50_ms),
            runs_text(p50s, 1),
        ],
        [
            f"{label}: p99 ms",
            f"{median(p99s):.1f}",
            ratio(median(p99s), base and base.latency_p99_ms),
            runs_text(p99s, 1),
        ],
    ]


def run(context: Context) -> Section:
    options = context.options
    section = Section(
        f"(c) light load: one file every {options.interval * 1000:.0f} ms for {options.seconds:g} s, "
        "rename to committed row"
    )
    rows, problems = [], Counter()
    for variant, label in VARIANTS.items():
        runs = []
        for number in range(options.runs):
            runs.append(light_once(context, variant, 200 + number))
            say(f"light {variant} run {number + 1}: p50 {runs[-1].p50:.1f} ms, p99 {runs[-1].p99:.1f} ms")
            problems += runs[-1].problems
        rows += rows_for(label, runs, context)
    section.lines += [
        f"`ingest up --concurrency {options.concurrency}`, SQLite, default settings (settle 1 s, batch wait 3 ms). "
        "Latency: each rename's wall-clock time to its item's `ingested_at`, read from the store after the window. "
        f"Compared with the no-op task's send-to-run latency. Median of {options.runs} runs.",
        "",
    ]
    section.table(["figure", "median", "vs no-op latency", "runs"], rows)
    section.problems = problems
    return section
