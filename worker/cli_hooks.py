"""`ingest hooks …`: the webhooks."""

from __future__ import annotations

import secrets
from typing import Annotated, Optional

import redis
import typer

from shared.db import session_scope
from shared.errors import ServiceError
from shared.settings import Settings
from worker import broker
from worker.cli_common import cli, open_store, setup, show

hooks_cli = typer.Typer(
    help="Webhooks: matching events POSTed as JSON, signed X-Ingest-Signature: sha256=<HMAC of the body>.",
    no_args_is_help=True,
)
cli.add_typer(hooks_cli, name="hooks")


@hooks_cli.command("add")
def hooks_add(
    url: str,
    events: Annotated[
        str, typer.Option("--events", help="Event names to send, globs, comma-separated: item.*,feed.failed")
    ] = "*",
    secret: Annotated[
        Optional[str], typer.Option("--secret", help="The HMAC key receivers check; unset: one is made and shown")
    ] = None,
) -> None:
    """POST every matching event from now on to URL (or change an existing hook's events and secret)."""
    from shared import hooks, subscriptions

    settings = setup("cli")
    globs = ",".join(hooks.parse_globs(events))
    key = secret or secrets.token_urlsafe(32)
    with session_scope(open_store(settings)) as session:
        hook, new = subscriptions.add_hook(session, url, globs, key)
        hook_id = hook.id
        alone = len(subscriptions.all_hooks(session)) == 1
    # Said before Redis is touched: the hook is stored now, and its secret is shown only here.
    typer.echo(f"{'added' if new else 'updated'} hook {hook_id}: {hooks.shown_url(url.strip())} (events {globs})")
    if secret is None:
        typer.echo(f"secret: {key}  (receivers check X-Ingest-Signature with it; shown this once)")
    with _redis(settings) as client:
        if client is not None and new:
            hooks.forget(client, hook_id)  # an id the database gave before, with state left in Redis
            # The first hook starts from now; one added beside others from where they stand.
            (hooks.start_group_at_end if alone else hooks.start_group)(client)


@hooks_cli.command("remove")
def hooks_remove(hook: Annotated[str, typer.Argument(help="The hook's URL, or its id (`hooks list`)")]) -> None:
    """Stop sending to a hook; events waiting for it are dropped."""
    from shared import hooks, subscriptions

    settings = setup("cli")
    with session_scope(open_store(settings)) as session:
        hook_id = subscriptions.remove_hook(session, hook)
        none_left = not subscriptions.all_hooks(session)
    if hook_id is None:
        raise ServiceError(f"no such hook: {hooks.shown_url(hook)}")
    with _redis(settings) as client:
        if client is not None:
            hooks.forget(client, hook_id)
            if none_left:
                hooks.stop_group(client)
    typer.echo(f"removed hook {hook_id}")


@hooks_cli.command("list")
def hooks_list(as_json: Annotated[bool, typer.Option("--json", help="A JSON array")] = False) -> None:
    """The webhooks and where each one's deliveries stand."""
    settings = setup("cli")
    store_url = open_store(settings)
    with _redis(settings) as client:
        records = hook_records(store_url, client)
    show(records, as_json, lambda record: [hook_line(record)], "no hooks")


class _redis:
    """The running service's Redis, or None when none runs (nothing is delivering then either)."""

    def __init__(self, settings: Settings) -> None:
        self._url = broker.running_redis_url(settings)

    def __enter__(self) -> redis.Redis | None:
        self._client = broker.connect(self._url) if self._url else None
        return self._client

    def __exit__(self, *_exc) -> None:
        if self._client is not None:
            self._client.close()


def hook_records(store_url: str, client: redis.Redis | None) -> list[dict]:
    """Each hook, its secret hidden, with its delivery state when Redis answers (`hooks list`, `status`)."""
    from shared import hooks, subscriptions

    with session_scope(store_url) as session:
        rows = [(row.id, row.url, row.events) for row in subscriptions.all_hooks(session)]
    records = []
    for hook_id, url, events in rows:
        record = {"id": hook_id, "url": hooks.shown_url(url), "events": events}
        if client is not None:
            record |= hooks.state(client, hook_id).as_record()
        records.append(record)
    return records


def hook_line(hook: dict) -> str:
    if "pending" not in hook:
        return f"{hook['id']:>3}  {hook['url']}  events {hook['events']}  (Redis not running: no delivery state)"
    health = f"failing x{hook['failures']}" if hook["failing"] else "ok"
    line = (
        f"{hook['id']:>3}  {health:<12} {hook['url']}  events {hook['events']}, waiting {hook['pending']}, "
        f"delivered {hook['delivered']}, last {hook['last_delivered'] or 'never'}"
    )
    if hook["dropped"]:
        line += f", dropped {hook['dropped']}"
    if hook["failing"]:
        line += f", next try {hook['retry_at']}  [{hook['last_error']}]"
    return line
