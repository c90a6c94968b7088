"""Medians over runs, percentiles, and the figures printed as markdown."""

from __future__ import annotations

import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(value: float, reference: float | None) -> str:
    if not reference or reference != reference or value != value:  # missing, zero or NaN
        return "–"
    return f"{value / reference:.2f}x"


def runs_text(values: list[float], digits: int = 0) -> str:
    return " / ".join(f"{value:,.{digits}f}" for value in values)


def say(message: str) -> None:
    """Progress on stderr, so stdout carries only the results."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Baseline:
    """The no-op Celery figures of this run, what every other figure is compared with."""

    rate: float  # messages/s, one message each
    latency_p50_ms: float
    latency_p99_ms: float
    worker_rss_mb: float  # the largest process of the no-op worker's tree


@dataclass
class Section:
    """One benchmark's part of the results: markdown lines, and anything odd the service logged."""

    title: str
    lines: list[str] = field(default_factory=list)
    problems: Counter = field(default_factory=Counter)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        self.lines += ["| " + " | ".join(row) + " |" for row in rows]
        self.lines.append("")

    def text(self) -> str:
        body = [f"### {self.title}", "", *self.lines]
        if self.problems:
            listed = ", ".join(f"{what} ×{count}" for what, count in self.problems.most_common(8))
            body += [f"Logged by `ingest up` (warnings and errors, all runs): {listed}", ""]
        return "\n".join(body)
