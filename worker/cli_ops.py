"""`ingest logs`, `ingest doctor` and `ingest migrate`: operating the service."""

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
def doctor() -> None:
    """Check settings, Redis, the database and its schema, the seeds folder and inotify limits."""
    from worker.doctor import run_checks

    settings = get_settings()
    results = run_checks(settings)
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
