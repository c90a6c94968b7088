"""(d) Feeds: 50 feeds of 100 entries each on a loopback HTTP server, all due at once, entries/s.

The feeds are subscribed with `ingest feeds add URL` (with INGEST_FEEDS_ALLOW_PRIVATE=true, since
they live on 127.0.0.1) once, into a template store, and parked (next poll far ahead) so that
`ingest up` can start and become idle first; each run starts on a copy of that store. The clock
starts when one UPDATE makes every feed due now; the scheduler's next tick claims them all. It stops
when `ingest wait` returns, started once the server has answered every feed (before then the queue
can be empty between a tick and the fetches it queues); every entry must then be stored.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
import tomllib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, select, update

from bench.corpus import Writer, feed_entry
from bench.cpu import CPU_HEADER, CpuWindow, cpu_rows
from bench.site import CONFIG, BenchError, Site, flush_redis, replace_sqlite, wait_for
from bench.stats import Section, median, ratio, runs_text, say
from bench.suite import Context
from shared.models import Feed, Origin
from tests.feedserver import FeedServer, Route, rss

PARKED = timedelta(days=365)
# The scheduler's tick in the runs: the settings file's (config/settings.toml), which `ingest up` reads.
TICK_SECONDS = float(tomllib.loads(CONFIG.read_text())["feeds_tick_seconds"])
ADD_PARALLEL = 2  # `ingest feeds add` is mostly interpreter start-up: two at a time on two cores


def serve_feeds(server: FeedServer, feeds: int, entries: int) -> list[str]:
    writer = Writer(300)
    urls = []
    for feed in range(feeds):
        items = [feed_entry(writer.story(feed * entries + n), f"feed{feed}-entry{n}") for n in range(entries)]
        server.routes[f"/feeds/{feed}.xml"] = Route(body=rss(f"Loopback News {feed}", items))
        urls.append(server.url(f"/feeds/{feed}.xml"))
    return urls


def answered(server: FeedServer) -> int:
    with server.lock:
        return sum(1 for seen in server.requests if seen.status == 200)


def first_answer(server: FeedServer) -> float:
    with server.lock:
        return min(seen.at for seen in server.requests)


@dataclass(frozen=True)
class FeedsRun:
    rate: float  # entries/s from making every feed due to `ingest wait` returning
    commit_rate: float  # ... to the last commit
    first_fetch: float  # seconds from making every feed due to the first feed's answer: the scheduler's tick
    from_first_fetch: float  # entries/s from the first feed's answer to `ingest wait` returning
    problems: Counter
    cpu: Counter


def subscribe(site: Site, urls: list[str]) -> None:
    """Every feed through the command a user types, then parked so that none is due yet."""
    with ThreadPoolExecutor(ADD_PARALLEL) as pool:
        list(pool.map(lambda url: site.ingest("feeds", "add", url, "--every", "1d"), urls))
    set_next_poll(site.store_url, datetime.now(UTC) + PARKED)


def set_next_poll(store_url: str, when: datetime) -> None:
    engine = create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(update(Feed.__table__).values(next_poll=when))
    engine.dispose()


def stored_entries(site: Site) -> int:
    origins = Origin.__table__
    with site.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(origins).where(origins.c.kind == "feed")).scalar()


def feeds_once(context: Context, template: Path, server: FeedServer, expected: int, number: int) -> FeedsRun:
    flush_redis(context.redis_url)
    with server.lock:
        server.requests.clear()
    with tempfile.TemporaryDirectory(dir=context.scratch) as folder:
        env = {"INGEST_FEEDS_ALLOW_PRIVATE": "true"}
        with Site(Path(folder), context.redis_url, env=env) as site:
            replace_sqlite(template, Path(folder) / "data" / "ingest.db")
            site.start(context.options.concurrency)
            # Made due right as `ingest wait` (the end of start) returned, the feeds waited most of a
            # scheduler tick for their first fetch in 7 runs of 12 (0.87-1.06 s): the two are not
            # independent. So a moment of the tick is drawn at random (seeded by the run), as feeds
            # come due at any.
            time.sleep(random.Random(number).uniform(0, TICK_SECONDS))
            with CpuWindow(site.up.pid) as cpu:
                started = time.time()
                set_next_poll(site.store_url, datetime.now(UTC))
                feeds = len(server.routes)
                wait_for(lambda: answered(server) >= feeds, context.options.timeout, "every feed to be fetched", 0.05)
                finished = site.wait_idle(context.options.timeout)
            stored = stored_entries(site)
            if stored != expected:
                raise BenchError(f"{expected} feed entries served, {stored} stored")
            first = first_answer(server)
            return FeedsRun(
                rate=expected / (finished - started),
                commit_rate=expected / (site.last_commit() - started),
                first_fetch=first - started,
                from_first_fetch=expected / (finished - first),
                problems=site.log_problems(),
                cpu=cpu.by_role,
            )


def make_template(context: Context, folder: Path, urls: list[str]) -> Path:
    with Site(folder, context.redis_url, env={"INGEST_FEEDS_ALLOW_PRIVATE": "true"}) as site:
        subscribe(site, urls)
    database = folder / "data" / "ingest.db"
    template = folder / "feeds-template.db"
    shutil.copyfile(database, template)
    return template


def run(context: Context) -> Section:
    options = context.options
    expected = options.feeds * options.entries
    section = Section(f"(d) feeds: {options.feeds} feeds of {options.entries} entries on loopback, all due at once")
    server = FeedServer().start()
    try:
        urls = serve_feeds(server, options.feeds, options.entries)
        with tempfile.TemporaryDirectory(dir=context.scratch) as folder:
            template = make_template(context, Path(folder), urls)
            runs = []
            for number in range(options.runs):
                runs.append(feeds_once(context, template, server, expected, number))
                say(
                    f"feeds run {number + 1}: {runs[-1].rate:,.0f} entries/s to wait, "
                    f"{runs[-1].commit_rate:,.0f} to last commit, first fetch after {runs[-1].first_fetch:.2f} s"
                )
    finally:
        server.stop()
    base = context.baseline.rate if context.baseline else None
    section.lines += [
        "RSS 2.0 from a stdlib ThreadingHTTPServer on 127.0.0.1 (tests/feedserver.py), entries with a guid, a link, "
        "a date and four paragraphs of escaped HTML; subscribed with `ingest feeds add`; SQLite; default scheduler "
        "tick (1 s). Clock from making every feed due (at a moment of the tick drawn at random, seeded by the run) "
        "to `ingest wait` returning. The first fetch comes at the scheduler's next tick, up to a second later, as "
        f"for any feed coming due; the last row leaves that wait out. Median of {options.runs} runs.",
        "",
    ]
    rates, commits = [r.rate for r in runs], [r.commit_rate for r in runs]
    firsts, after_first = [r.first_fetch * 1000 for r in runs], [r.from_first_fetch for r in runs]
    section.table(
        ["figure", "median", "vs no-op baseline", "runs"],
        [
            ["entries/s to `ingest wait`", f"{median(rates):,.0f}", ratio(median(rates), base), runs_text(rates)],
            ["entries/s to last commit", f"{median(commits):,.0f}", ratio(median(commits), base), runs_text(commits)],
            [
                "ms from due to the first feed answered (the scheduler's tick)",
                f"{median(firsts):,.0f}",
                "",
                runs_text(firsts),
            ],
            [
                "entries/s from the first feed answered to `ingest wait`",
                f"{median(after_first):,.0f}",
                ratio(median(after_first), base),
                runs_text(after_first),
            ],
        ],
    )
    section.lines.append(
        "Where the CPU went over the same window (the worker's pool processes together, which fetch, parse and "
        "store; `wait`: `ingest wait`; the loopback feed server, in the bench's process, not counted):"
    )
    section.lines.append("")
    section.table(CPU_HEADER, cpu_rows([r.cpu for r in runs], expected))
    section.problems = sum((r.problems for r in runs), Counter())
    return section
