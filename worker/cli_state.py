"""`ingest status`, `wait`, `export`, `failures`, `clusters`, `reindex`, `submit`: the store and the queue."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Optional

import redis
import typer
import typer.main

from shared import store
from shared.db import session_scope
from shared.deliveries import DONE_CHANNEL
from shared.errors import ServiceError
from shared.messages import RawInput
from shared.settings import Settings
from worker import broker
from worker.cli_common import cli, open_store, queue_packed, queues, sending_app, setup, show
from worker.cli_feeds import feed_line, feed_records
from worker.cli_hooks import hook_line, hook_records


IDLE_READINGS_NEEDED = 2  # two idle readings in a row: a message between two keys is not missed
WAIT_POLL_SECONDS = 0.1
# The reading that confirms an idle one needs only to come after any message moving between two
# keys has landed in the second: a few milliseconds, not a whole poll (a burst's end is seen sooner).
CONFIRM_POLL_SECONDS = 0.02
# While the work drains, the next reading comes when the rate seen so far says it will be done,
# but no sooner than this: a reading costs a few milliseconds of the same two cores.
SOONEST_POLL_SECONDS = 0.01
EARLY_WALK_GAP_SECONDS = 0.2  # a walk of the folder during a wait that found files untaken: not again sooner
BARRIER_PATIENCE_SECONDS = 2.0  # no word of the barrier from a running watcher by then: walk the folder
WAIT_FOR_SERVICE_SECONDS = 0.5  # nothing running: look again for a service this often
# A worker says a message is done just before it returns; Celery acknowledges it a moment later.
ACKNOWLEDGED_SOON_SECONDS = 0.005


def _files_waiting(settings: Settings, url: str, redis_url: str) -> int:
    """Files in the seeds folder not taken yet."""
    waiting = broker.watcher_waiting(_client(redis_url))
    if waiting is None:  # no watcher runs: the folder itself says what waits
        waiting = _untaken_in_folder(settings, url)
    return waiting


def _files_unstored(url: str) -> int:
    """Files taken whose arrival the store lacks so far."""
    with session_scope(url) as session:
        return store.count_unlanded(session)


def _untaken_in_folder(settings: Settings, url: str) -> int:
    from shared.seeds import count_untaken

    if not settings.seeds_dir.is_dir():
        return 0
    with session_scope(url) as session:
        taken = store.taken_signatures(session)
    return count_untaken(settings.seeds_dir, taken)


@lru_cache(maxsize=4)
def _client(redis_url: str):
    """One client a URL for the command's life: `ingest wait` reads dozens of times, and a connection
    and a PING each time cost it a tenth of its CPU."""
    return broker.connect(redis_url)


def _pending(
    settings: Settings, store_url: str, redis_url: str, busy_is_enough: bool = False, idle_is_enough: bool = False
) -> dict[str, int]:
    """What is pending, in detail. The store's count (a query over every file taken and not confirmed
    yet, 25 ms in a large store) finds what a lost message left unstored; `ingest wait` reads dozens
    of times, so it is left out where the queue's counts are answer enough: with busy_is_enough, a
    busy queue; with idle_is_enough, an empty one (a reading that another, with the count, confirms)."""
    counts = broker.queue_counts(_client(redis_url), queues())
    waiting = _files_waiting(settings, store_url, redis_url)
    busy = counts["queued"] + counts["in_flight"] > 0
    if (busy_is_enough and busy) or (idle_is_enough and not busy):
        return counts | {"files_waiting": waiting, "files_unstored": 0}
    return counts | {"files_waiting": waiting, "files_unstored": _files_unstored(store_url)}


def pending_total(detail: dict[str, int]) -> int:
    # A taken file not yet stored is either on the queue (counted there) or lost and about to be
    # sent again: count each once.
    return detail["files_waiting"] + max(detail["queued"] + detail["in_flight"], detail["files_unstored"])


def status_record(settings: Settings, store_url: str, redis_url: str) -> dict:
    """What `ingest status --json` prints (and the API's GET /status)."""
    with session_scope(store_url) as session:
        result = store.counts(session)
    detail = _pending(settings, store_url, redis_url)
    result["pending"] = pending_total(detail)
    result["pending_detail"] = detail
    result["feeds"] = feed_records(store_url)
    result["feeds_network_down"] = network_down(result["feeds"])
    result["hooks"] = hook_records(store_url, broker.connect(redis_url))
    return result


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
    lines.extend(f"  {feed_line(feed)}" for feed in status["feeds"])
    failing = sum(1 for hook in status["hooks"] if hook.get("failing"))
    lines.append(f"{'hooks':<11} {len(status['hooks']) or 'none'}" + (f"  ({failing} failing)" if failing else ""))
    lines.extend(f"  {hook_line(hook)}" for hook in status["hooks"])
    return "\n".join(lines)


@cli.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
    live: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C")] = False,
) -> None:
    """Where things stand: items, duplicates, failures, what is pending."""
    settings = setup("cli")
    store_url = open_store(settings)
    with broker.broker_url(settings) as redis_url:
        if live:
            _watch_status(settings, store_url, redis_url)
            return
        current = status_record(settings, store_url, redis_url)
    typer.echo(json.dumps(current) if as_json else _status_text(current))


def _watch_status(settings: Settings, store_url: str, redis_url: str) -> None:
    from rich.live import Live
    from rich.text import Text

    with Live(Text(_status_text(status_record(settings, store_url, redis_url))), auto_refresh=False) as screen:
        try:
            while True:
                time.sleep(1)
                screen.update(Text(_status_text(status_record(settings, store_url, redis_url))), refresh=True)
        except KeyboardInterrupt:
            return


@cli.command()
def wait(timeout: Annotated[float, typer.Option(min=0, help="Give up after this many seconds")] = 600.0) -> None:
    """Block until nothing is pending: queue empty, nothing in flight, no file waiting. Exit 1 on timeout."""
    settings = setup("cli")
    store_url = open_store(settings)
    deadline = time.monotonic() + timeout
    folder = _FolderCheck(settings, store_url)
    try:
        _wait_until_idle(settings, store_url, folder, deadline, timeout)
    finally:
        folder.remove_barrier()


def _wait_until_idle(settings: Settings, store_url: str, folder: _FolderCheck, deadline: float, timeout: float) -> None:
    idle_readings = 0
    drain = _Drain()
    done = _DoneMessages()
    hurry: int | None = None  # what was pending when a message said it was done
    while True:
        redis_url = broker.running_redis_url(settings)
        if redis_url is None:
            # Nothing runs: read what is pending once (a private Redis held only for that moment,
            # so an `ingest up` starting now is not kept from its own), then wait for a service.
            with broker.broker_url(settings) as private_url:
                pending = _pending(settings, store_url, private_url)
            folder.remove_barrier()  # no watcher runs to hear it
            idle_readings = IDLE_READINGS_NEEDED if pending_total(pending) == 0 else 0
        else:
            done.listen(redis_url)  # before the reading: a message done after it wakes the wait
            folder.hear_barrier(_client(redis_url))  # before the reading: heard, that reading counts the files
            # The first reading counts everything (the store's connection and query made at the start,
            # not at the end); later, the store is counted only by a reading that confirms an idle one.
            first = idle_readings == 0 and drain.pending is None
            pending = _pending(
                settings,
                store_url,
                redis_url,
                busy_is_enough=not first,
                idle_is_enough=idle_readings == 0 and not first,
            )
            idle_readings = idle_readings + 1 if pending_total(pending) == 0 else 0
            if idle_readings == 0:
                folder.check_early(pending)
        if idle_readings >= IDLE_READINGS_NEEDED:
            untaken = folder.untaken_at_last()
            if untaken == 0:
                return
            pending["files_waiting"] = untaken or 0
            idle_readings = 0
        if time.monotonic() >= deadline:
            running = "" if redis_url else " (and nothing runs to take it: start `ingest up`)"
            detail = _pending(settings, store_url, redis_url) if redis_url else pending  # every count, for the user
            typer.echo(f"error: still pending after {timeout:g}s{running}: {json.dumps(detail)}", err=True)
            raise typer.Exit(1)
        seconds = _next_poll_seconds(redis_url, idle_readings, drain.seconds_left(pending_total(pending)))
        if hurry is not None and pending_total(pending) >= hurry:
            seconds = min(seconds, SOONEST_POLL_SECONDS)  # a message said done, not yet acknowledged
        else:
            hurry = None
        if done.wait(seconds, only_in_hand(pending) and idle_readings == 0):
            hurry = pending_total(pending)
            time.sleep(ACKNOWLEDGED_SOON_SECONDS)


def only_in_hand(pending: dict[str, int]) -> bool:
    """Nothing left but messages a worker holds: the end of each may be the end of all."""
    return pending["in_flight"] > 0 and pending["queued"] == 0 and pending["files_waiting"] == 0


class _DoneMessages:
    """The workers' word that a message is done (Deliveries.DONE_CHANNEL), to wake the wait early.

    Only an earlier reading follows from it: every decision is still made on readings. Word that
    comes while messages are still queued is dropped unread, and where Redis cannot be subscribed
    to, the wait polls as before."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.subscription = None

    def listen(self, redis_url: str) -> None:
        """Subscribed to the running service's Redis, and what was said so far dropped."""
        if redis_url != self.url:
            self.close()
            self.url = redis_url
            try:
                self.subscription = _client(redis_url).pubsub(ignore_subscribe_messages=True)
                self.subscription.subscribe(DONE_CHANNEL)
            except redis.exceptions.RedisError:
                self.subscription = None
        while self._next(0) is not None:
            pass

    def wait(self, seconds: float, wake_early: bool) -> bool:
        """Sleep `seconds`; True when a message done ended the sleep early (only with wake_early)."""
        until = time.monotonic() + seconds
        if wake_early and self.subscription is not None:
            while (left := until - time.monotonic()) > 0:
                if self._next(left) is not None:
                    return True
        time.sleep(max(0.0, until - time.monotonic()))
        return False

    def _next(self, seconds: float):
        if self.subscription is None:
            return None
        try:
            return self.subscription.get_message(timeout=seconds)
        except redis.exceptions.RedisError:
            self.close()
            return None

    def close(self) -> None:
        if self.subscription is not None:
            try:
                self.subscription.close()
            except redis.exceptions.RedisError:
                pass
        self.subscription, self.url = None, None


class _FolderCheck:
    """Whether every file in the seeds folder when the wait began has been heard of.

    The watcher counts the files it has heard of; files whose events the kernel still holds (a burst
    just renamed in) it has not. So the wait drops a barrier, a hidden file, into the folder: its
    event reaches the watcher after all of theirs, and once the watcher says it has handled it, its
    count includes them. Without word of it from a running watcher in BARRIER_PATIENCE_SECONDS (a
    watcher on another folder or polling, an older one, a folder the wait cannot write), the folder
    is walked instead (about 6 µs a file, and the ledger loaded): as soon as the watcher has sent
    all it heard of, while the workers still store the burst, and again no sooner than a few of its
    own durations later if it found files untaken."""

    def __init__(self, settings: Settings, store_url: str) -> None:
        self.settings, self.store_url = settings, store_url
        self.clear = False
        self.next_at = 0.0
        self.barrier = _drop_barrier(settings.seeds_dir)
        self.give_up_barrier_at = time.monotonic() + BARRIER_PATIENCE_SECONDS

    def hear_barrier(self, client) -> None:
        """The watcher has handled the barrier: its count covers the folder, no walk is needed. No
        watcher runs: no word will come, the walk may start at once."""
        if self.clear or self.barrier is None:
            return
        acknowledged, watcher_runs = broker.barrier_state(client, self.barrier.name)
        if acknowledged:
            self.clear = True
            self.remove_barrier()
        elif not watcher_runs:
            self.remove_barrier()

    def _walk_allowed(self) -> bool:
        return self.barrier is None or time.monotonic() >= self.give_up_barrier_at

    def untaken(self) -> int:
        started = time.monotonic()
        count = _untaken_in_folder(self.settings, self.store_url)
        self.clear = count == 0
        self.next_at = time.monotonic() + max(EARLY_WALK_GAP_SECONDS, 4 * (time.monotonic() - started))
        return count

    def check_early(self, pending: dict[str, int]) -> None:
        if (
            not self.clear
            and pending["files_waiting"] == 0
            and time.monotonic() >= self.next_at
            and self._walk_allowed()
        ):
            self.untaken()

    def untaken_at_last(self) -> int | None:
        """Files in the folder untaken once all else is idle: 0 when the folder is clear; None while the
        barrier may still be heard of (look again soon)."""
        if self.clear:
            return 0
        if not self._walk_allowed():
            return None
        return self.untaken()

    def remove_barrier(self) -> None:
        if self.barrier is not None:
            self.barrier.unlink(missing_ok=True)
            self.barrier = None


def _drop_barrier(seeds: Path) -> Path | None:
    """A hidden, empty file in the seeds folder (never an input), or None where it cannot be made."""
    import uuid

    barrier = seeds / f"{broker.BARRIER_PREFIX}{uuid.uuid4().hex}"
    try:
        barrier.touch(exist_ok=False)
    except OSError:
        return None
    return barrier


class _Drain:
    """When the pending work will run out, at the rate it went down between the last two readings."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.at = 0.0
        self.rate: float | None = None  # pending work done a second, as last seen going down
        self.unchanged = 0  # readings in a row that found the same amount

    def seconds_left(self, pending: int) -> float | None:
        now = time.monotonic()
        before, elapsed = self.pending, now - self.at
        self.pending, self.at = pending, now
        # Capped: past a few halvings the poll is at its longest anyway (and 2**n must stay a float).
        self.unchanged = min(self.unchanged + 1, 8) if pending == before else 0
        if before is not None and before > pending and elapsed > 0:
            self.rate = (before - pending) / elapsed
        elif before is not None and pending > before:
            self.rate = None  # more work came: the old rate says nothing of it
        if not self.rate:
            return None
        # Unchanged (the last message of a burst still in hand): the old rate, less trusted each time.
        return pending / self.rate * 2**self.unchanged


def _next_poll_seconds(redis_url: str | None, idle_readings: int, seconds_left: float | None = None) -> float:
    if redis_url is None:
        return WAIT_FOR_SERVICE_SECONDS
    if idle_readings:
        return CONFIRM_POLL_SECONDS
    if seconds_left is None:
        return WAIT_POLL_SECONDS
    return min(WAIT_POLL_SECONDS, max(SOONEST_POLL_SECONDS, seconds_left))


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
    settings = setup("cli")
    since_at = _parse_since(since) if since else None
    out = sys.stdout
    with session_scope(open_store(settings)) as session:
        for record in store.export_records(session, since_at):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


@cli.command()
def failures(as_json: Annotated[bool, typer.Option("--json", help="A JSON array")] = False) -> None:
    """The inputs that could not be ingested, each with its reason."""
    settings = setup("cli")
    with session_scope(open_store(settings)) as session:
        records = store.failure_records(session)
    show(records, as_json, _failure_lines, "no failures")


def _failure_lines(record: dict) -> list[str]:
    entry = f" [{record['entry_id']}]" if record["entry_id"] else ""
    return [f"{record['at']}  {record['ref']}{entry}: {record['reason']}"]


@cli.command()
def clusters(as_json: Annotated[bool, typer.Option("--json", help="A JSON array")] = False) -> None:
    """Near-duplicate groups of two or more items, with titles and sources."""
    settings = setup("cli")
    with session_scope(open_store(settings)) as session:
        groups = store.cluster_records(session)
    show(groups, as_json, _cluster_lines, "no clusters")


def _cluster_lines(group: dict) -> list[str]:
    lines = [f"cluster {group['cluster_id']} ({group['size']} items)"]
    for item in group["items"]:
        why = f"  matched {item['matched_item_id']} at {item['similarity']}" if item["matched_item_id"] else ""
        lines.append(f"  {item['id']:>7}  {item['title']}  [{item['source'] or '-'}]{why}")
    return lines


@cli.command()
def reindex() -> None:
    """Rebuild the near-duplicate index in Redis from the store, workers running or not; every cluster keeps its id."""
    from worker.index_upkeep import rebuild_with_progress

    settings = setup("cli")
    store_url = open_store(settings)
    with session_scope(store_url) as session:
        total = store.counts(session)["items"]
    rebuilt = rebuild_with_progress(settings, store_url, total)
    typer.echo(f"reindexed {rebuilt.restored + rebuilt.placed} items ({rebuilt.placed} placed in a cluster now)")


def _expand(paths: list[Path]):
    """(ref, path) of every input named: files as given, folders by the seeds-folder rules."""
    from shared.seeds import scan

    for path in paths:
        if path.is_dir():
            for seed in scan(path):
                yield (path / seed.ref).as_posix(), seed.path
        else:
            yield path.as_posix(), path


def _submitted_inputs(paths: list[Path], max_bytes: int, problems: list[str]) -> Iterator[RawInput]:
    """Each named file read as an input; one that cannot be read is said on stderr and left out."""
    for ref, path in _expand(paths):
        try:
            if path.stat().st_size > max_bytes:
                raise ServiceError(f"too large: more than {max_bytes} bytes")
            payload = path.read_bytes()
        except (OSError, ServiceError) as exc:
            problems.append(ref)
            typer.echo(f"error: {ref}: {getattr(exc, 'strerror', None) or exc}", err=True)
            continue
        yield RawInput.from_bytes(payload, kind="file", ref=ref)


@cli.command()
def submit(paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest now")]) -> None:
    """Enqueue these files now, wherever they are, through the same pipeline."""
    settings = setup("cli")
    open_store(settings)  # its schema checked (settings.store_url is the store)
    problems: list[str] = []
    with broker.broker_url(settings) as redis_url:
        broker.connect(redis_url)
        app = sending_app(redis_url)
        queued = queue_packed(settings, app, _submitted_inputs(paths, settings.max_file_bytes, problems))
    typer.echo(f"queued {queued} file{'s' if queued != 1 else ''}")
    if problems:
        raise typer.Exit(1)


stats_cli = typer.Typer(help="Reports on what the store holds.", no_args_is_help=True)
cli.add_typer(stats_cli, name="stats")


@stats_cli.command("fields")
def stats_fields(as_json: Annotated[bool, typer.Option("--json", help="A JSON array")] = False) -> None:
    """Per format, the share of items having each field: a source that stopped giving dates or authors shows."""
    settings = setup("cli")
    with session_scope(open_store(settings)) as session:
        shares = store.field_shares(session)
    if as_json:
        typer.echo(json.dumps(shares, indent=2))
    elif not shares:
        typer.echo("no items")
    else:
        typer.echo("\n".join(field_share_table(shares)))


def field_share_table(shares: list[dict]) -> list[str]:
    """One row a format: its item count and each field's share as a whole percentage."""
    names = list(shares[0]["fields"])
    widths = [max(len("format"), *(len(row["format"]) for row in shares)), 7, *(max(len(n), 4) for n in names)]
    header = ["format", "items", *names]
    rows = [header] + [
        [row["format"], str(row["items"]), *(f"{row['fields'][name]:.0%}" for name in names)] for row in shares
    ]
    return ["  ".join(_aligned(n, cell, width) for n, (cell, width) in enumerate(zip(cells, widths))) for cells in rows]


def _aligned(column: int, cell: str, width: int) -> str:
    return cell.rjust(width) if column else cell.ljust(width)
