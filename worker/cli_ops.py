"""`ingest logs`, `ingest events`, `ingest doctor` and `ingest migrate`: operating the service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.main

from shared.errors import ServiceError
from shared.settings import get_settings
from worker.cli_common import cli, setup


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
def doctor(
    role: Annotated[
        Optional[str],
        typer.Option(help="Check only what this role needs, and that its process answers: watcher, worker, beat"),
    ] = None,
) -> None:
    """Check settings, Redis, the database and its schema, the seeds folder and inotify limits."""
    from worker.doctor import ROLES, run_checks

    if role is not None and role not in ROLES:
        raise typer.BadParameter(f"{role!r} is not one of {', '.join(ROLES)}", param_hint="--role")
    settings = get_settings()
    results = run_checks(settings, role)
    for result in results:
        typer.echo(result.line())
    if any(result.status == "fail" for result in results):
        raise typer.Exit(1)


@cli.command()
def migrate() -> None:
    """Bring the store's schema up to this version (one-shot; `ingest up` also does it at start)."""
    from shared.migrations import HEAD
    from shared.redact import mask_secrets
    from shared.schema import upgrade_schema

    settings = setup("cli")
    found = upgrade_schema(settings.store_url).revision
    store = mask_secrets(settings.store_url)
    if found == HEAD:
        typer.echo(f"{store} is at schema revision {HEAD}: nothing to do")
    elif found is None:
        typer.echo(f"{store} created at schema revision {HEAD}")
    else:
        typer.echo(f"{store} migrated from schema revision {found} to {HEAD}")
    _upgrade_index(settings)


def _upgrade_index(settings) -> None:
    """An index left in an older layout by an earlier version, rebuilt in this version's."""
    from shared import store
    from shared.db import session_scope
    from shared.index_layout import LAYOUT
    from worker import broker
    from worker.index_upkeep import rebuild_with_progress

    if broker.served_redis_url(settings) is None and not broker.has_private_data(settings):
        return  # no Redis configured or running, and none ever ran here: no index to upgrade
    with session_scope(settings.store_url) as session:
        total = store.counts(session)["items"]
    rebuilt = rebuild_with_progress(settings, settings.store_url, total, upgrade_only=True)
    if rebuilt is not None:
        typer.echo(f"near-duplicate index rebuilt in layout {LAYOUT}: {rebuilt.restored + rebuilt.placed} items")


FOLLOW_BLOCK_MS = 1000  # a follow waits this long for a new event before looking again (Ctrl-C ends it)


@cli.command()
def events(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing events as they come")] = False,
    start: Annotated[str, typer.Option("--from", help="Only events after this stream id (0: all kept)")] = "0",
    event: Annotated[Optional[str], typer.Option("--event", help="Only these events; a glob: 'item.*'")] = None,
) -> None:
    """The `ingest:events` stream, one JSON object a line ({"id": …, "event": …, …}), oldest first."""
    from shared import events as stream
    from worker import broker

    settings = setup("cli")
    with broker.broker_url(settings) as url:
        client = broker.connect(url)
        after = start
        while True:  # what the stream keeps, a page at a time
            batch = stream.read(client, after)
            after = _show_events(batch, event, after)
            if len(batch) < stream.READ_COUNT:
                break
        while follow:
            after = _show_events(stream.read(client, after, block_ms=FOLLOW_BLOCK_MS), event, after)


def _show_events(batch: list[tuple[str, dict[str, str]]], pattern: str | None, after: str) -> str:
    """Print the events matching `pattern` as JSON lines; the id to read after next."""
    import fnmatch
    import json

    for entry_id, fields in batch:
        if pattern is None or fnmatch.fnmatchcase(fields.get("event", ""), pattern):
            typer.echo(json.dumps({"id": entry_id, **fields}, ensure_ascii=False))
    return batch[-1][0] if batch else after
