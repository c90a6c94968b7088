"""The per-item cost of the pure stages (derive) and of the store write (save_item), on the sample."""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from shared import store
from shared.db import dispose_engines, init_schema, session_scope
from shared.pipeline import Context, derive
from shared.settings import Settings

SAMPLE = Path(__file__).resolve().parent.parent / "seeds" / "000_adca40b1d62e3161.txt"
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


def bench_store(context: Context, url: str) -> float:
    init_schema(url)
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
    with tempfile.TemporaryDirectory() as folder:
        store_ms = bench_store(context, f"sqlite:///{folder}/bench.db")
    return (
        "### pipeline (bench/pipeline_bench.py)\n\n"
        f"Per item, median of {ROUNDS} rounds of {ITEMS_PER_ROUND} variants of the sample article:\n\n"
        "| stage | ms per item |\n| --- | --- |\n"
        f"| derive: decode, parse, normalise, language, fingerprint | {derive_ms:.3f} |\n"
        f"| save_item: one SQLite transaction (WAL) | {store_ms:.3f} |\n"
    )
