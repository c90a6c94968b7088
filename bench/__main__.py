"""`make bench`: run every benchmark under bench/ and append its figures to bench/RESULTS.md."""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import dedup_bench, pipeline_bench

RESULTS = Path(__file__).with_name("RESULTS.md")
BENCHMARKS = (pipeline_bench, dedup_bench)


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import os

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def main() -> None:
    sections = [f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `make bench`\n\nMachine: {machine()}\n"]
    for benchmark in BENCHMARKS:
        sections.append(benchmark.run())
    text = "\n".join(sections)
    print(text)
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\nAppended by `make bench`; medians of repeated runs in one process.\n"
        )
    with RESULTS.open("a") as out:
        out.write(text)
    sys.exit(0)


if __name__ == "__main__":
    main()
