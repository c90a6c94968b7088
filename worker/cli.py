"""`ingest`: the command line. Every failure is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Optional

import redis
import structlog
import typer
import typer.main
from kombu.exceptions import OperationalError as BrokerError
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError as DatabaseError

from shared import store
from shared.db import init_schema, session_scope
from shared.errors import ServiceError
from shared.logging import configure_logging, wants_json
from shared.settings import Settings, get_settings
from worker import broker

log = structlog.get_logger("ingest.cli")
cli = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Event-driven ingestion: seeds folder and feeds -> Redis -> Celery -> store.",
)
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
IDLE_READINGS_NEEDED = 2  # two idle readings in a row: a message between two keys is not missed


def _setup(process: str) -> Settings:
    settings = get_settings()
    configure_logging(settings, process=process)
    return settings


def _open_store(settings: Settings) -> str:
    url = settings.store_url
    init_schema(url)
    return url


def _celery(url: str):
    from worker.app import app

    app.conf.broker_url = url
    return app


def _quiet(settings: Settings) -> list[str]:
    """Celery's start-up banners are not JSON: leave them out of a JSON log stream."""
    return ["--quiet"] if wants_json(settings) else []


def _send(app, batch) -> None:
    from worker.app import QUEUE

    app.send_task("ingest.process", args=[batch.to_message()], queue=QUEUE)


# -- the processes ------------------------------------------------------------------------------


@cli.command()
def up(
    concurrency: Annotated[Optional[int], typer.Option(min=1, help="Worker processes (default: one per core)")] = None,
) -> None:
    """Watcher, worker and scheduler in the foreground; Ctrl-C or SIGTERM stops them gracefully."""
    from worker.supervisor import Child, Supervisor, ingest_argv

    settings = _setup("up")
    _seed_feeds(settings, _open_store(settings))
    concurrency = concurrency or settings.worker_concurrency or os.cpu_count() or 1
    embedded = None
    url = settings.redis_url
    if not url:
        embedded = broker.EmbeddedRedis(settings.data_dir)
        url = embedded.start()
    else:
        broker.connect(url)
    children = [
        # Mingle and gossip exchange state between workers that this service never reads.
        Child(
            "worker", ingest_argv("worker", "--concurrency", str(concurrency), "--without-mingle", "--without-gossip")
        ),
        Child("watcher", ingest_argv("watch")),
        Child("beat", ingest_argv("beat")),
    ]
    env = {**os.environ, "INGEST_REDIS_URL": url}
    metrics = _start_metrics(settings, url, env)
    log.info(
        "up.started",
        redis_url=url,
        store=_safe_url(settings.store_url),
        seeds_dir=str(settings.seeds_dir),
        concurrency=concurrency,
    )
    try:
        Supervisor(children, env, worker_stop_seconds=settings.task_time_limit + 30).run()
    finally:
        if metrics is not None:
            metrics.shutdown()
        if embedded is not None:
            embedded.stop()


def _start_metrics(settings: Settings, redis_url: str, env: dict[str, str]):
    """With INGEST_METRICS_PORT set: children write their metrics to files, summed and served here."""
    if settings.metrics_port is None:
        return None
    from worker import metrics_server

    folder = metrics_server.prepare_folder(settings.data_dir / "metrics")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(folder.resolve())
    try:
        server = metrics_server.serve(settings.metrics_port, folder, redis_url, _queues())
    except OSError as exc:
        raise ServiceError(f"cannot serve metrics on 127.0.0.1:{settings.metrics_port} ({exc.strerror})") from None
    log.info("metrics.serving", url=f"http://127.0.0.1:{settings.metrics_port}/metrics")
    return server


@cli.command()
def watch() -> None:
    """The seeds-folder watcher alone."""
    from worker.watcher import Watcher

    settings = _setup("watcher")
    _open_store(settings)
    url = broker.running_redis_url(settings)
    if url is None:
        raise ServiceError("no Redis: set INGEST_REDIS_URL, or run `ingest up`")
    client = broker.connect(url)
    app = _celery(url)
    stop = threading.Event()
    _stop_on_signals(stop)
    Watcher(settings, send=lambda batch: _send(app, batch), queue_idle=lambda: _queue_idle(client)).run(stop)


def _queue_idle(client: redis.Redis) -> bool:
    try:
        return not any(broker.queue_counts(client, _queues()).values())
    except redis.exceptions.RedisError:
        return False  # cannot tell: do not resend on a guess


@cli.command(context_settings=PASS_THROUGH)
def worker(ctx: typer.Context) -> None:
    """A Celery worker of this app; extra arguments go to Celery (`celery -A worker.app worker`)."""
    settings = _setup("worker")
    _open_store(settings)
    url = broker.running_redis_url(settings)
    if url is None:
        raise ServiceError("no Redis: set INGEST_REDIS_URL, or run `ingest up`")
    broker.connect(url)
    _celery(url).worker_main([*_quiet(settings), "worker", "--loglevel", settings.log_level.upper(), *ctx.args])


@cli.command()
def beat() -> None:
    """The periodic scheduler alone; a second one waits on standby instead of doubling the schedule."""
    from worker.leader import Leadership

    settings = _setup("beat")
    _seed_feeds(settings, _open_store(settings))
    url = broker.running_redis_url(settings)
    if url is None:
        raise ServiceError("no Redis: set INGEST_REDIS_URL, or run `ingest up`")
    leadership = Leadership(broker.connect(url))
    stop = threading.Event()
    _stop_on_signals(stop)
    if not leadership.wait_to_lead(stop):
        return
    _exit_on_signals()  # until Celery installs its own handlers, a stop request must still stop us
    leadership.keep()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.data_dir / "beat-schedule"
    try:
        _celery(url).start(
            [*_quiet(settings), "beat", "--loglevel", settings.log_level.upper(), "--schedule", str(schedule)]
        )
    finally:
        leadership.release()


def _seed_feeds(settings: Settings, store_url: str) -> None:
    """Add the [[feeds]] of the settings file that are not subscribed yet."""
    from shared import subscriptions
    from shared.durations import parse_duration

    if not settings.feeds:
        return
    with session_scope(store_url) as session:
        for seed in settings.feeds:
            if subscriptions.find_feed(session, seed.url) is None:
                every = parse_duration(seed.every or settings.feeds_default_every)
                subscriptions.add_feed(session, seed.url, every)
                log.info("feeds.seeded", feed=seed.url, every_seconds=every)


# -- where things stand -------------------------------------------------------------------------


def _file_counts(settings: Settings, url: str) -> dict[str, int]:
    """Files in the seeds folder not taken yet, and files taken whose arrival the store lacks so far."""
    from shared.seeds import scan

    with session_scope(url) as session:
        taken = store.taken_signatures(session)
        unstored = store.count_unlanded(session)
    waiting = 0
    if settings.seeds_dir.is_dir():
        waiting = sum(1 for seed in scan(settings.seeds_dir) if taken.get(seed.ref) != seed.signature)
    return {"files_waiting": waiting, "files_unstored": unstored}


def _pending(settings: Settings, store_url: str, redis_url: str) -> dict[str, int]:
    counts = broker.queue_counts(broker.connect(redis_url), _queues())
    return counts | _file_counts(settings, store_url)


def _queues() -> tuple[str, ...]:
    from worker.app import FEEDS_QUEUE, QUEUE

    return (QUEUE, FEEDS_QUEUE)


def pending_total(detail: dict[str, int]) -> int:
    # A taken file not yet stored is either on the queue (counted there) or lost and about to be
    # sent again: count each once.
    return detail["files_waiting"] + max(detail["queued"] + detail["in_flight"], detail["files_unstored"])


def _status(settings: Settings, store_url: str, redis_url: str) -> dict:
    with session_scope(store_url) as session:
        result = store.counts(session)
    detail = _pending(settings, store_url, redis_url)
    result["pending"] = pending_total(detail)
    result["pending_detail"] = detail
    result["feeds"] = _feed_records(store_url)
    result["feeds_network_down"] = network_down(result["feeds"])
    return result


def _feed_records(store_url: str) -> list[dict]:
    from shared import subscriptions

    with session_scope(store_url) as session:
        return [subscriptions.feed_record(feed) for feed in subscriptions.all_feeds(session)]


def network_down(feeds: list[dict]) -> bool:
    """Every enabled feed (two or more) failing with no HTTP answer at all: the network, not the feeds."""
    active = [feed for feed in feeds if feed["enabled"] and feed["last_polled"]]
    return len(active) >= 2 and all(feed["error_count"] and feed["last_status"] is None for feed in active)


def _status_text(status: dict) -> str:
    detail = status["pending_detail"]
    lines = [f"{name:<11} {status[name]}" for name in ("items", "origins", "duplicates", "clusters", "failed")]
    lines.append(
        f"{'pending':<11} {status['pending']}  (queued {detail['queued']}, in flight "
        f"{detail['in_flight']}, files waiting {detail['files_waiting']}, "
        f"sent not stored {detail['files_unstored']})"
    )
    lines.append(f"{'feeds':<11} {len(status['feeds']) or 'none'}")
    if status.get("feeds_network_down"):
        lines.append("            every feed fails with no answer: the network looks down, not the feeds")
    lines.extend(f"  {_feed_line(feed)}" for feed in status["feeds"])
    return "\n".join(lines)


def _feed_line(feed: dict) -> str:
    health = "ok" if feed["healthy"] else ("disabled" if not feed["enabled"] else f"failing x{feed['error_count']}")
    status = feed["last_status"] if feed["last_status"] is not None else "-"
    return (
        f"{health:<12} {feed['url']}  last {feed['last_polled'] or 'never'} ({status}), "
        f"new {feed['new_entries']}, next {feed['next_poll'] or '-'}"
        + (f"  [{feed['last_error']}]" if feed["last_error"] else "")
    )


@cli.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
    live: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C")] = False,
) -> None:
    """Where things stand: items, duplicates, failures, what is pending."""
    settings = _setup("cli")
    store_url = _open_store(settings)
    with broker.broker_url(settings) as redis_url:
        if live:
            _watch_status(settings, store_url, redis_url)
            return
        current = _status(settings, store_url, redis_url)
    typer.echo(json.dumps(current) if as_json else _status_text(current))


def _watch_status(settings: Settings, store_url: str, redis_url: str) -> None:
    from rich.live import Live
    from rich.text import Text

    with Live(Text(_status_text(_status(settings, store_url, redis_url))), auto_refresh=False) as screen:
        try:
            while True:
                time.sleep(1)
                screen.update(Text(_status_text(_status(settings, store_url, redis_url))), refresh=True)
        except KeyboardInterrupt:
            return


@cli.command()
def wait(timeout: Annotated[float, typer.Option(min=0, help="Give up after this many seconds")] = 600.0) -> None:
    """Block until nothing is pending: queue empty, nothing in flight, no file waiting. Exit 1 on timeout."""
    settings = _setup("cli")
    store_url = _open_store(settings)
    deadline = time.monotonic() + timeout
    with broker.broker_url(settings) as redis_url:
        idle_readings = 0
        while idle_readings < IDLE_READINGS_NEEDED:
            pending = _pending(settings, store_url, redis_url)
            idle_readings = idle_readings + 1 if pending_total(pending) == 0 else 0
            if idle_readings < IDLE_READINGS_NEEDED:
                if time.monotonic() >= deadline:
                    typer.echo(f"error: still pending after {timeout:g}s: {json.dumps(pending)}", err=True)
                    raise typer.Exit(1)
                time.sleep(0.25)


# -- reading the store --------------------------------------------------------------------------


def _parse_since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 date or time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@cli.command()
def export(
    since: Annotated[Optional[str], typer.Option(help="Only items ingested at or after this ISO-8601 time")] = None,
) -> None:
    """Every stored item, one JSON object a line, oldest first."""
    settings = _setup("cli")
    since_at = _parse_since(since) if since else None
    out = sys.stdout
    with session_scope(_open_store(settings)) as session:
        for record in store.export_records(session, since_at):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


@cli.command()
def failures(as_json: Annotated[bool, typer.Option("--json", help="A JSON array")] = False) -> None:
    """The inputs that could not be ingested, each with its reason."""
    settings = _setup("cli")
    with session_scope(_open_store(settings)) as session:
        records = store.failure_records(session)
    _show(records, as_json, _failure_lines, "no failures")


def _failure_lines(record: dict) -> list[str]:
    entry = f" [{record['entry_id']}]" if record["entry_id"] else ""
    return [f"{record['at']}  {record['ref']}{entry}: {record['reason']}"]


def _show(records: list[dict], as_json: bool, lines: Callable[[dict], list[str]], empty: str) -> None:
    """Records as one JSON array, or as readable lines (and a word when there are none)."""
    if as_json:
        typer.echo(json.dumps(records, ensure_ascii=False))
        return
    for record in records:
        for line in lines(record):
            typer.echo(line)
    if not records:
        typer.echo(empty)


@cli.command()
def clusters(as_json: Annotated[bool, typer.Option("--json", help="A JSON array")] = False) -> None:
    """Near-duplicate groups of two or more items, with titles and sources."""
    settings = _setup("cli")
    with session_scope(_open_store(settings)) as session:
        groups = store.cluster_records(session)
    _show(groups, as_json, _cluster_lines, "no clusters")


def _cluster_lines(group: dict) -> list[str]:
    lines = [f"cluster {group['cluster_id']} ({group['size']} items)"]
    for item in group["items"]:
        why = f"  matched {item['matched_item_id']} at {item['similarity']}" if item["matched_item_id"] else ""
        lines.append(f"  {item['id']:>7}  {item['title']}  [{item['source'] or '-'}]{why}")
    return lines


REINDEX_PAGE = 500


@cli.command()
def reindex() -> None:
    """Rebuild the near-duplicate index in Redis from the store; every cluster keeps its id."""
    from rich.progress import Progress

    from shared.dedup import NearDuplicateIndex, ensure_compact_hashes

    settings = _setup("cli")
    store_url = _open_store(settings)
    with session_scope(store_url) as session:
        total = store.counts(session)["items"]
    with broker.broker_url(settings) as redis_url:
        client = broker.connect(redis_url)
        ensure_compact_hashes(client)
        index = NearDuplicateIndex(client, settings.near_duplicate_threshold)
        index.clear()
        placed = 0
        with Progress(transient=False, console=_stderr_console()) as progress:
            task = progress.add_task("reindexing", total=total)
            last_id = 0
            while page := _reindex_page(store_url, index, last_id):
                placed += page[1]
                last_id = page[0]
                progress.advance(task, page[2])
    typer.echo(f"reindexed {total} items ({placed} placed in a cluster for the first time)")


def _reindex_page(store_url: str, index, after_id: int) -> tuple[int, int, int] | None:
    """Restore one page of items; (last id, newly placed, count), or None at the end."""
    with session_scope(store_url) as session:
        rows = store.items_for_index(session, after_id, REINDEX_PAGE)
        placed = 0
        for item_id, body, cluster_id in rows:
            if cluster_id is not None:
                index.restore(item_id, body, cluster_id)
            else:
                placement = index.claim(item_id, body)
                store.set_cluster(
                    session, item_id, placement.cluster_id, placement.matched_item_id, placement.similarity
                )
                placed += 1
    return (rows[-1][0], placed, len(rows)) if rows else None


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


# -- submitting ---------------------------------------------------------------------------------


def _expand(paths: list[Path]):
    """(ref, path) of every input named: files as given, folders by the seeds-folder rules."""
    from shared.seeds import scan

    for path in paths:
        if path.is_dir():
            for seed in scan(path):
                yield (path / seed.ref).as_posix(), seed.path
        else:
            yield path.as_posix(), path


@cli.command()
def submit(paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest now")]) -> None:
    """Enqueue these files now, wherever they are, through the same pipeline."""
    from shared.messages import Batch, RawInput

    settings = _setup("cli")
    _open_store(settings)
    queued, problems = 0, 0
    with broker.broker_url(settings) as redis_url:
        broker.connect(redis_url)
        app = _celery(redis_url)
        for ref, path in _expand(paths):
            try:
                if path.stat().st_size > settings.max_file_bytes:
                    raise ServiceError(f"too large: more than {settings.max_file_bytes} bytes")
                payload = path.read_bytes()
            except (OSError, ServiceError) as exc:
                problems += 1
                typer.echo(f"error: {ref}: {getattr(exc, 'strerror', None) or exc}", err=True)
                continue
            _send(app, Batch(inputs=[RawInput.from_bytes(payload, kind="file", ref=ref)]))
            queued += 1
    typer.echo(f"queued {queued} file{'s' if queued != 1 else ''}")
    if problems:
        raise typer.Exit(1)


# -- operating ----------------------------------------------------------------------------------


@cli.command()
def logs(
    file: Annotated[
        Optional[Path], typer.Argument(help="A JSON log file (default: INGEST_LOG_FILE, else stdin)")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing lines as they are written")] = False,
    level: Annotated[Optional[str], typer.Option(help="Lowest level shown: debug, info, warning, error")] = None,
    event: Annotated[Optional[str], typer.Option(help="Only this event; a glob such as 'feed.*' works")] = None,
) -> None:
    """Pretty-print JSON log lines, filtered by level and event."""
    from worker.logview import LEVELS, follow as follow_file, show

    settings = get_settings()
    if level is not None and level.lower() not in LEVELS:
        raise typer.BadParameter(f"not a level: {level!r} (debug, info, warning, error)", param_hint="--level")
    path = file or settings.log_file
    if path is None and (follow or sys.stdin.isatty()):
        raise ServiceError("no log file: name one, set INGEST_LOG_FILE, or pipe JSON lines in")
    if path is not None and not path.exists() and not follow:
        raise ServiceError(f"no such log file: {path}")
    try:
        if follow:
            show(follow_file(path), level and level.lower(), event, sys.stdout.isatty(), typer.echo)
        elif path is None:
            show(sys.stdin, level and level.lower(), event, sys.stdout.isatty(), typer.echo)
        else:
            with open(path, encoding="utf-8", errors="replace") as lines:
                show(lines, level and level.lower(), event, sys.stdout.isatty(), typer.echo)
    except BrokenPipeError:
        sys.stderr.close()  # `ingest logs | head`: the reader has seen enough


@cli.command()
def doctor() -> None:
    """Check settings, Redis, the database and its schema, the seeds folder and inotify limits."""
    from worker.doctor import run_checks

    settings = get_settings()
    results = run_checks(settings)
    for result in results:
        typer.echo(result.line())
    if any(result.status == "fail" for result in results):
        raise typer.Exit(1)


# -- feeds --------------------------------------------------------------------------------------

feeds_cli = typer.Typer(help="The feed subscriptions (OPML 2.0 in and out).", no_args_is_help=True)
cli.add_typer(feeds_cli, name="feeds")


def _interval(settings: Settings, every: str | None) -> float:
    from shared.durations import parse_duration

    try:
        return parse_duration(every or settings.feeds_default_every)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--every") from None


@feeds_cli.command("add")
def feeds_add(
    url: str, every: Annotated[Optional[str], typer.Option(help="Poll interval: 30s, 15m, 2h, 1d")] = None
) -> None:
    """Subscribe to a feed (or change its interval); it is polled at once."""
    from shared import subscriptions

    settings = _setup("cli")
    interval = _interval(settings, every)
    with session_scope(_open_store(settings)) as session:
        feed, new = subscriptions.add_feed(session, url, interval)
        typer.echo(f"{'added' if new else 'updated'} {feed.url} (every {_every(interval)})")


@feeds_cli.command("remove")
def feeds_remove(url: str) -> None:
    """Unsubscribe; the items already stored stay."""
    from shared import subscriptions

    settings = _setup("cli")
    with session_scope(_open_store(settings)) as session:
        if not subscriptions.remove_feed(session, url):
            raise ServiceError(f"not subscribed: {url}")
    typer.echo(f"removed {url}")


@feeds_cli.command("list")
def feeds_list(as_json: Annotated[bool, typer.Option("--json", help="A JSON array")] = False) -> None:
    """The subscriptions and where each one's polling stands."""
    records = _feed_records(_open_store(_setup("cli")))
    _show(records, as_json, lambda r: [f"{r['url']}  every {_every(r['every_seconds'])}  {_feed_line(r)}"], "no feeds")


@feeds_cli.command("import")
def feeds_import(path: Path) -> None:
    """Subscribe to every feed of an OPML file."""
    from shared import subscriptions
    from shared.opml import read_opml

    settings = _setup("cli")
    try:
        outlines = read_opml(path.read_bytes())
    except OSError as exc:
        raise ServiceError(f"cannot read {path}: {exc.strerror}") from None
    added = 0
    with session_scope(_open_store(settings)) as session:
        for outline in outlines:
            interval = _interval(settings, outline.every)
            added += subscriptions.add_feed(session, outline.url, interval, title=outline.title)[1]
    typer.echo(f"imported {len(outlines)} feeds ({added} new)")


@feeds_cli.command("export")
def feeds_export() -> None:
    """The subscriptions as OPML 2.0, on standard output."""
    from shared import subscriptions
    from shared.opml import Outline, write_opml

    settings = _setup("cli")
    with session_scope(_open_store(settings)) as session:
        outlines = [
            Outline(feed.url, feed.title, _every(feed.interval_seconds)) for feed in subscriptions.all_feeds(session)
        ]
    sys.stdout.write(write_opml(outlines))


def _every(seconds: float) -> str:
    from shared.durations import format_duration

    return format_duration(seconds)


# -- the entry point ----------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _stop_on_signals(stop: threading.Event) -> None:
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())


def _exit_on_signals() -> None:
    import signal

    def leave(*_args) -> None:
        raise SystemExit(0)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, leave)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ServiceError):
        return str(exc)
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"invalid setting{' ' + where if where else ''}: {first['msg']}"
    if isinstance(exc, tomllib.TOMLDecodeError):
        return f"cannot read the settings file: {exc}"
    if isinstance(exc, DatabaseError):
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        return f"cannot use the database at {_safe_url(get_settings().store_url)} ({reason})"
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return f"cannot reach Redis ({broker.describe_redis_error(exc)})"
    if isinstance(exc, BrokerError):
        return f"cannot reach the broker ({broker.describe_redis_error(exc)})"
    return f"{type(exc).__name__}: {exc}"


def main() -> None:
    command = typer.main.get_command(cli)
    try:
        sys.exit(command.main(prog_name="ingest", standalone_mode=False) or 0)
    except typer.TyperException as exc:  # usage errors: one line too, not a framed box
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(130)
    except (
        ServiceError,
        ValidationError,
        tomllib.TOMLDecodeError,
        DatabaseError,
        redis.exceptions.RedisError,
        BrokerError,
    ) as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(1)
    except Exception as exc:  # the last line of defence: a bug still ends as one line, detail at debug
        logging.getLogger("ingest.cli").debug("cli.crashed", exc_info=True)
        typer.echo(f"error: internal error: {_one_line(exc)} (INGEST_LOG_LEVEL=debug shows the detail)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
