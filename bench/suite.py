"""What every end-to-end benchmark is given: the sizes chosen on the command line, the shared Redis,
the baseline measured in this run, and where to put temporary folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.stats import Baseline


@dataclass
class Options:
    """Defaults are the issue's sizes; `python -m bench --help` lists the flags that change them."""

    runs: int = 3
    docs: int = 5_000  # burst files, and the baseline's messages
    concurrency: int = 2
    seconds: float = 60.0  # light-load window
    interval: float = 0.1  # light load: one file this often
    feeds: int = 50
    entries: int = 100
    pages: int = 500
    scale_items: int = 1_000_000
    scale_files: int = 100_000
    scale_index: bool = True  # the near-duplicate index holds scale_items items too, as a store that size has
    memory_docs: int = 100_000
    sample_seconds: float = 0.5
    timeout: float = 3_600.0  # longest `ingest wait` a run may need


def postgres_url() -> str | None:
    """INGEST_BENCH_DATABASE_URL, else the tests' INGEST_TEST_DATABASE_URL; None: the PostgreSQL runs are skipped."""
    return os.environ.get("INGEST_BENCH_DATABASE_URL") or os.environ.get("INGEST_TEST_DATABASE_URL") or None


@dataclass
class Context:
    options: Options
    redis_url: str
    scratch: Path  # temporary folders go under it (one filesystem: renames stay renames)
    baseline: Baseline | None = None
    burst_rate: float | None = None  # the empty-store SQLite burst, docs/s: what (f) scale compares with
