"""What every `ingest` command shares: the Typer app, set-up, the store, the Celery app."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import structlog
import typer
import typer.main

from shared.schema import ensure_schema, upgrade_schema
from shared.logging import configure_logging, wants_json
from shared.settings import Settings, get_settings
from worker.broker import QUEUE, QUEUES


log = structlog.get_logger("ingest.cli")


cli = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Event-driven ingestion: seeds folder and feeds -> Redis -> Celery -> store.",
)


PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def setup(process: str) -> Settings:
    settings = get_settings()
    configure_logging(settings, process=process)
    return settings


def open_store(settings: Settings) -> str:
    """The store, its schema checked: created when empty, refused when it needs `ingest migrate`."""
    url = settings.store_url
    ensure_schema(url)
    return url


def migrated_store(settings: Settings) -> str:
    """The store brought to this version's schema: what `ingest up` and `ingest migrate` do first."""
    upgrade_schema(settings.store_url)
    return settings.store_url


def celery_app(url: str):
    """The worker's app, its tasks registered."""
    from worker.app import app

    app.conf.broker_url = url
    return app


def sending_app(url: str):
    """An app that sends tasks by name and runs none: the pipeline stays unimported."""
    from worker.app import create_app

    return create_app(get_settings(), url, with_tasks=False)


def quiet_args(settings: Settings) -> list[str]:
    """Celery's start-up banners are not JSON: leave them out of a JSON log stream."""
    return ["--quiet"] if wants_json(settings) else []


def send(app, batch) -> None:
    app.send_task("ingest.process", args=[batch.to_message()], queue=QUEUE)


def queue_packed(settings: Settings, app, inputs: Iterable, on_refused: Callable | None = None) -> int:
    """Submitted inputs packed as the watcher packs a burst: each pack recorded in the outbox in one
    transaction first (a lost message is sent again from it), then sent as one message. A message the
    broker refuses raises, or goes to `on_refused(pack, error)`: the outbox holds it either way.
    Inputs are read a pack at a time; returns how many were queued."""
    from kombu.exceptions import OperationalError as BrokerError

    from shared import store
    from shared.db import session_scope
    from shared.messages import Batch, packs

    queued = 0
    for pack in packs(inputs, lambda raw: raw.size, settings.watch_batch_files, settings.watch_batch_bytes):
        with session_scope(settings.store_url) as session:
            for raw in pack:
                store.record_submission(session, raw)
        queued += len(pack)
        try:
            send(app, Batch(inputs=pack))
        except (BrokerError, OSError) as exc:
            if on_refused is None:
                raise
            on_refused(pack, exc)
    return queued


def queues() -> tuple[str, ...]:
    return QUEUES


def show(records: list[dict], as_json: bool, lines: Callable[[dict], list[str]], empty: str) -> None:
    """Records as one JSON array, or as readable lines (and a word when there are none)."""
    if as_json:
        typer.echo(json.dumps(records, ensure_ascii=False))
        return
    for record in records:
        for line in lines(record):
            typer.echo(line)
    if not records:
        typer.echo(empty)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)
