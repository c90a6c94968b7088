"""The per-item cost of the pure stages (derive) and of the store write (save_item), on the sample."""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from shared import store
from shared.db import dispose_engines, session_scope
from shared.schema import upgrade_schema
from shared.pipeline import Context, derive
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "seeds" / "000_adca40b1d62e3161.txt"
FIXTURES = ROOT / "tests" / "fixtures"
HTML_PAGES = (FIXTURES / "same-article" / "putin.html", FIXTURES / "heldout" / "berlin.html")
FEEDS = (FIXTURES / "same-article" / "putin.rss", FIXTURES / "heldout" / "observatory.atom")
ROUNDS = 7
ITEMS_PER_ROUND = 200


def _variant(number: int) -> bytes:
    # Distinct content each time, so the store inserts instead of finding a duplicate.
    return SAMPLE.read_bytes().replace(b"Speaking at", f"Speaking ({number}) at".encode())


def _median_ms(timings: list[float]) -> float:
    return statistics.median(timings) * 1000 / ITEMS_PER_ROUND


def bench_derive(context: Context) -> float:
    inputs = [_variant(n) for n in range(ITEMS_PER_ROUND)]
    derive("warm.txt", inputs[0], context)  # loads the language model once
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for data in inputs:
            derive("a.txt", data, context)
        timings.append(time.perf_counter() - started)
    return _median_ms(timings)


def bench_derive_files(context: Context, paths: tuple[Path, ...]) -> float:
    """ms per input over fixture files of one kind (HTML pages, feeds), each derived ITEMS_PER_ROUND times."""
    inputs = [(path.name, path.read_bytes()) for path in paths]
    for name, data in inputs:
        derive(name, data, context)  # imports the format's parser module once
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(ITEMS_PER_ROUND // len(inputs)):
            for name, data in inputs:
                derive(name, data, context)
        timings.append(time.perf_counter() - started)
    return _median_ms(timings)


def _warm_up(context: Context, name: str, data: bytes) -> None:
    derive(name, data, context)  # imports and the language model: a frame of its own, left out of profiles


def derive_for_profiling(count: int, path: Path | None = None) -> None:
    """derive() `count` times, over variants of the sample or over one file: a target for py-spy (PROFILE.md)."""
    context = Context.from_settings(Settings())
    inputs = (
        [("a.txt", _variant(n)) for n in range(count)] if path is None else [(path.name, path.read_bytes())] * count
    )
    _warm_up(context, *inputs[0])
    for name, data in inputs:
        derive(name, data, context)


def bench_store(context: Context, url: str) -> float:
    upgrade_schema(url)
    timings = []
    for round_number in range(ROUNDS):
        derived = [
            derive("a.txt", _variant(round_number * ITEMS_PER_ROUND + n), context)[0] for n in range(ITEMS_PER_ROUND)
        ]
        started = time.perf_counter()
        for number, d in enumerate(derived):
            arrival = store.Arrival(f"{round_number}-{number}:0", "file", f"{number}.txt", None, datetime.now(UTC))
            with session_scope(url) as session:
                store.save_item(session, d.item, d.content_hash, d.format, arrival)
        timings.append(time.perf_counter() - started)
    dispose_engines()
    return _median_ms(timings)


def run() -> str:
    context = Context.from_settings(Settings())
    derive_ms = bench_derive(context)
    html_ms = bench_derive_files(context, HTML_PAGES)
    feed_ms = bench_derive_files(context, FEEDS)
    with tempfile.TemporaryDirectory() as folder:
        store_ms = bench_store(context, f"sqlite:///{folder}/bench.db")
    return (
        "### pipeline (bench/pipeline_bench.py)\n\n"
        f"Per item, median of {ROUNDS} rounds of {ITEMS_PER_ROUND} variants of the sample article:\n\n"
        "| stage | ms per item |\n| --- | --- |\n"
        f"| derive: decode, parse, normalise, language, fingerprint | {derive_ms:.3f} |\n"
        f"| derive, HTML pages ({', '.join(p.name for p in HTML_PAGES)}) | {html_ms:.3f} |\n"
        f"| derive, feeds ({', '.join(p.name for p in FEEDS)}), per document | {feed_ms:.3f} |\n"
        f"| save_item: one SQLite transaction (WAL) | {store_ms:.3f} |\n"
    )
