"""`make bench` (`python -m bench`): the benchmark suite; appends a dated section to bench/RESULTS.md.

    python -m bench                                   # everything, at the issue's sizes, 3 runs each
    python -m bench --only burst,light --docs 500 --runs 1 --seconds 10

The end-to-end benchmarks share one private Redis; the no-op Celery baseline runs first whenever one
of them is selected, so that every figure is compared with Celery's own cost measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

from bench.stats import Section, say
from bench.suite import Context, Options

RESULTS = Path(__file__).with_name("RESULTS.md")

# name -> (module, function). In this order: (f) scale compares with (a)'s burst when both run.
BENCHMARKS = {
    "pipeline": ("bench.pipeline_bench", "run"),
    "dedup": ("bench.dedup_bench", "run"),
    "burst": ("bench.burst", "run"),
    "light": ("bench.light", "run"),
    "feeds": ("bench.feeds_bench", "run"),
    "html": ("bench.burst", "run_html"),
    "scale": ("bench.scale", "run"),
    "memory": ("bench.memory", "run"),
    "api": ("bench.api_bench", "run"),
}
IN_PROCESS = {"pipeline", "dedup"}  # the two older benchmarks: no service, no baseline, a string back
FLAG_HELP = {
    "runs": "runs of each benchmark (the median is reported)",
    "docs": "burst files, and no-op baseline messages",
    "concurrency": "worker processes (`ingest up --concurrency`, and the baseline's worker)",
    "seconds": "light-load window",
    "interval": "light load: one file this often (s)",
    "feeds": "feeds served on loopback",
    "entries": "entries per feed",
    "pages": "HTML pages",
    "scale_items": "items preloaded into the store for the scale run",
    "scale_files": "files in seeds/ and in the ledger for the scale run",
    "scale_index": "scale: the near-duplicate index in Redis holds scale-items items too (about 2 minutes to fill)",
    "memory_docs": "documents of the memory run",
    "sample_seconds": "memory: RSS sampling period",
    "timeout": "longest `ingest wait` of one run (s)",
}


def parse(argv: list[str]) -> tuple[list[str], Options, bool]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--no-save", action="store_true", help="print the results without appending to RESULTS.md")
    defaults = Options()
    for option in fields(Options):
        default = getattr(defaults, option.name)
        flag = "--" + option.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=FLAG_HELP[option.name]
            )
        else:
            parser.add_argument(flag, type=type(default), default=default, help=FLAG_HELP[option.name])
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    options = Options(**{option.name: getattr(args, option.name) for option in fields(Options)})
    return [name for name in BENCHMARKS if name in chosen], options, not args.no_save


def run_benchmark(name: str, context: Context | None) -> str:
    module, function = BENCHMARKS[name]
    started = time.monotonic()
    say(f"== {name}")
    try:
        result = getattr(importlib.import_module(module), function)(*(() if name in IN_PROCESS else (context,)))
    except Exception as exc:  # one benchmark failing must not lose the figures of the others
        say(f"== {name} FAILED: {exc!r}")
        return f"### {name}\n\nFailed after {time.monotonic() - started:.0f}s: `{type(exc).__name__}: {exc}`\n"
    say(f"== {name} done in {time.monotonic() - started:.0f}s")
    return result.text() if isinstance(result, Section) else result


def run_all(chosen: list[str], options: Options) -> list[str]:
    from bench import baseline
    from bench.site import redis_server

    parts = [run_benchmark(name, None) for name in chosen if name in IN_PROCESS]
    end_to_end = [name for name in chosen if name not in IN_PROCESS]
    if not end_to_end:
        return parts
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as scratch, redis_server(Path(scratch)) as redis_url:
        context = Context(options, redis_url, Path(scratch))
        say("== baseline")
        parts.append(baseline.run(context).text())
        parts += [run_benchmark(name, context) for name in end_to_end]
    return parts


def _exit_on_signal(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    from bench.machine import header

    # Stopped by SIGTERM or a closed terminal: unwind, so that every `ingest up` and Redis it
    # started is stopped by its context manager (SIGKILL is covered by PR_SET_PDEATHSIG).
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    chosen, options, save = parse(sys.argv[1:])
    command = "python -m bench " + shlex.join(sys.argv[1:])
    started = datetime.now(UTC)
    parts = run_all(chosen, options)
    text = "\n".join([header(command.strip(), started), *parts])
    print(text)
    if save:
        if not RESULTS.exists():
            RESULTS.write_text("# Benchmark results\n\nAppended by `make bench`.\n")
        with RESULTS.open("a") as out:
            out.write("\n" + text)
        say(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
