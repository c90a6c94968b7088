"""`ingest feeds …`: the subscriptions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.main

from shared.db import session_scope
from shared.errors import ServiceError
from shared.redact import mask_secrets
from shared.settings import Settings
from worker.cli_common import cli, open_store, setup, show


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

    settings = setup("cli")
    interval = _interval(settings, every)
    with session_scope(open_store(settings)) as session:
        feed, new = subscriptions.add_feed(session, url, interval)
        typer.echo(f"{'added' if new else 'updated'} {mask_secrets(feed.url)} (every {every_text(interval)})")


@feeds_cli.command("remove")
def feeds_remove(url: str) -> None:
    """Unsubscribe; the items already stored stay."""
    from shared import subscriptions

    settings = setup("cli")
    with session_scope(open_store(settings)) as session:
        if not subscriptions.remove_feed(session, url):
            raise ServiceError(f"not subscribed: {mask_secrets(url)}")
    typer.echo(f"removed {mask_secrets(url)}")


@feeds_cli.command("list")
def feeds_list(as_json: Annotated[bool, typer.Option("--json", help="A JSON array")] = False) -> None:
    """The subscriptions and where each one's polling stands."""
    records = feed_records(open_store(setup("cli")))
    show(
        records, as_json, lambda r: [f"{r['url']}  every {every_text(r['every_seconds'])}  {feed_line(r)}"], "no feeds"
    )


@feeds_cli.command("import")
def feeds_import(path: Path) -> None:
    """Subscribe to every feed of an OPML file."""
    from shared import subscriptions
    from shared.opml import read_opml

    settings = setup("cli")
    try:
        outlines = read_opml(path.read_bytes())
    except OSError as exc:
        raise ServiceError(f"cannot read {path}: {exc.strerror}") from None
    added = 0
    with session_scope(open_store(settings)) as session:
        for outline in outlines:
            interval = _interval(settings, outline.every)
            added += subscriptions.add_feed(session, outline.url, interval, title=outline.title)[1]
    typer.echo(f"imported {len(outlines)} feeds ({added} new)")


@feeds_cli.command("export")
def feeds_export() -> None:
    """The subscriptions as OPML 2.0, on standard output (credentials in feed URLs kept: it is a backup)."""
    from shared import subscriptions
    from shared.opml import Outline, write_opml

    settings = setup("cli")
    with session_scope(open_store(settings)) as session:
        outlines = [
            Outline(feed.url, feed.title, every_text(feed.interval_seconds))
            for feed in subscriptions.all_feeds(session)
        ]
    sys.stdout.write(write_opml(outlines))


def every_text(seconds: float) -> str:
    from shared.durations import format_duration

    return format_duration(seconds)


def feed_records(store_url: str) -> list[dict]:
    from shared import subscriptions

    with session_scope(store_url) as session:
        return [_masked(subscriptions.feed_record(feed)) for feed in subscriptions.all_feeds(session)]


def _masked(record: dict) -> dict:
    """A feed behind basic auth is listed (in `feeds list` and `status`) without its password."""
    return {key: mask_secrets(value) if isinstance(value, str) else value for key, value in record.items()}


def feed_line(feed: dict) -> str:
    health = "ok" if feed["healthy"] else ("disabled" if not feed["enabled"] else f"failing x{feed['error_count']}")
    status = feed["last_status"] if feed["last_status"] is not None else "-"
    return (
        f"{health:<12} {feed['url']}  last {feed['last_polled'] or 'never'} ({status}), "
        f"new {feed['new_entries']}, next {feed['next_poll'] or '-'}"
        + (f"  [{feed['last_error']}]" if feed["last_error"] else "")
    )
