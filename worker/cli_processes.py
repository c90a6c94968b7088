"""`ingest up`, `watch`, `worker`, `beat`: the long-running processes."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Optional

import redis
import typer
import typer.main

from shared.db import session_scope
from shared.errors import ServiceError
from shared.redact import mask_secrets
from shared.settings import Settings
from worker import broker
from worker.cli_common import (
    PASS_THROUGH,
    celery_app,
    cli,
    log,
    migrated_store,
    open_store,
    queues,
    quiet_args,
    send,
    sending_app,
    setup,
)


@cli.command()
def up(
    concurrency: Annotated[Optional[int], typer.Option(min=1, help="Worker processes (default: one per core)")] = None,
) -> None:
    """Watcher, worker and scheduler in the foreground; Ctrl-C or SIGTERM stops them gracefully."""
    from worker.supervisor import Child, Supervisor, ingest_argv

    settings = setup("up")
    seed_feeds(settings, migrated_store(settings))
    concurrency = concurrency or settings.worker_concurrency or os.cpu_count() or 1
    embedded = None
    url = settings.redis_url
    if not url:
        embedded = broker.EmbeddedRedis(settings.data_dir)
        url = embedded.start()
    else:
        broker.connect_patiently(url)
    children = [
        # Mingle and gossip exchange state between workers that this service never reads.
        Child(
            "worker",
            ingest_argv("worker", "--concurrency", str(concurrency), "--without-mingle", "--without-gossip"),
            # Its owner gone, its Redis goes too: any shutdown would wait on acknowledgements that
            # can never be sent (seen: a worker hung in its cold shutdown). So it ends at once, its
            # pool with it (Celery asks the kernel for that); the messages it held were never
            # acknowledged, so they are delivered again after the next start.
            death_signal=signal.SIGKILL,
        ),
        Child("watcher", ingest_argv("watch")),
        Child("beat", ingest_argv("beat")),
        *([Child("api", ingest_argv("api"))] if settings.api_port is not None else []),
    ]
    env = {**os.environ, "INGEST_REDIS_URL": url}
    metrics = _start_metrics(settings, url, env)
    # An index an earlier version left in an older layout is rebuilt while the service runs, in a
    # thread of its own: the start need not wait for a look at Redis, let alone a rebuild.
    threading.Thread(target=_upgrade_index, args=(settings, url), name="index-upgrade", daemon=True).start()
    log.info(
        "up.started",
        redis_url=mask_secrets(url),
        store=mask_secrets(settings.store_url),
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


def _upgrade_index(settings: Settings, redis_url: str) -> None:
    from shared.index_layout import LAYOUT, index_layout

    try:
        if index_layout(broker.connect(redis_url)) == LAYOUT:
            return  # the usual case, told without importing the pipeline
    except (ServiceError, redis.exceptions.RedisError):
        pass  # the upkeep below waits for Redis and says so
    from worker.index_upkeep import upgrade_until_current

    upgrade_until_current(settings, settings.store_url, redis_url)


def _start_metrics(settings: Settings, redis_url: str, env: dict[str, str]):
    """With INGEST_METRICS_PORT set: children write their metrics to files, summed and served here."""
    if settings.metrics_port is None:
        return None
    from worker import metrics_server

    folder = metrics_server.prepare_folder(settings.data_dir / "metrics")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(folder.resolve())
    env["INGEST_METRICS_PORT"] = ""  # the children's metrics are served here, not each on the same port
    registry = metrics_server.role_registry("up", folder, redis_url, queues())
    server = metrics_server.serve(settings.metrics_host, settings.metrics_port, registry)
    log.info("metrics.serving", url=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics", role="up")
    return server


def _serve_role_metrics(settings: Settings, role: str, redis_url: str | None) -> None:
    """A role started alone, with INGEST_METRICS_PORT set, serves its own /metrics (role label); the
    watcher and the scheduler also serve the queue gauges (redis_url), workers do not."""
    if settings.metrics_port is None:
        return
    from worker import metrics_server

    folder = None
    if role == "worker":
        folder = metrics_server.prepare_folder(settings.data_dir / "metrics" / f"worker-{os.getpid()}")
        _count_in_files(folder)
    registry = metrics_server.role_registry(role, folder, redis_url, queues())
    metrics_server.serve(settings.metrics_host, settings.metrics_port, registry)
    log.info("metrics.serving", url=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics", role=role)


def _count_in_files(folder: Path) -> None:
    """Metric values in files under folder (prometheus_client's multiprocess mode), for this process
    and the pool processes it forks, so the main process can sum them. prometheus_client picks its
    value class when imported: nothing has imported it yet here, but reset it should something have."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder.resolve())
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


@cli.command()
def api() -> None:
    """The HTTP API alone, on INGEST_API_HOST:INGEST_API_PORT (OpenAPI at /docs)."""
    import uvicorn

    from worker.api import create_api, refuse_open_binding

    settings = setup("api")
    if settings.api_port is None:
        raise ServiceError("set INGEST_API_PORT to the port the API should listen on")
    refuse_open_binding(settings)
    open_store(settings)
    url = broker.served_redis_url(settings)
    if url is None:
        raise ServiceError("no Redis: set INGEST_REDIS_URL, or run `ingest up`")
    broker.connect_patiently(url)
    log.info("api.serving", url=f"http://{settings.api_host}:{settings.api_port}", token=settings.api_token is not None)
    # Our logging set-up, not uvicorn's: its records become JSON lines like every other.
    uvicorn.run(
        create_api(settings, url), host=settings.api_host, port=settings.api_port, log_config=None, access_log=False
    )


@cli.command()
def watch() -> None:
    """The seeds-folder watcher alone."""
    from worker.watcher import Watcher

    settings = setup("watcher")
    open_store(settings)
    url = broker.served_redis_url(settings)
    if url is None:
        raise ServiceError("no Redis: set INGEST_REDIS_URL, or run `ingest up`")
    client = broker.connect_patiently(url)
    _serve_role_metrics(settings, "watcher", url)
    app = sending_app(url)
    stop = threading.Event()
    stop_on_signals(stop)
    Watcher(
        settings,
        send=lambda batch: send(app, batch),
        queue_idle=lambda: _queue_idle(client),
        report=lambda waiting, starting: _report_watcher_state(client, waiting, starting),
        acknowledge=lambda name, waiting, starting: _acknowledge_barrier(client, name, waiting, starting),
    ).run(stop)


def _report_watcher_state(client: redis.Redis, waiting: int, starting: bool) -> None:
    try:
        broker.publish_watcher_state(client, waiting, starting)
    except redis.exceptions.RedisError:
        pass  # unsaid, the state expires: `ingest wait` then reads the folder itself


def _acknowledge_barrier(client: redis.Redis, name: str, waiting: int, starting: bool) -> None:
    try:
        broker.acknowledge_barrier(client, name, waiting, starting)
    except redis.exceptions.RedisError:
        pass  # unsaid, `ingest wait` walks the folder itself


def _queue_idle(client: redis.Redis) -> bool:
    try:
        return not any(broker.queue_counts(client, queues()).values())
    except redis.exceptions.RedisError:
        return False  # cannot tell: do not resend on a guess


@cli.command(context_settings=PASS_THROUGH)
def worker(ctx: typer.Context) -> None:
    """A Celery worker of this app; extra arguments go to Celery (`celery -A worker.app worker`)."""
    settings = setup("worker")
    open_store(settings)
    url = broker.served_redis_url(settings)
    if url is None:
        raise ServiceError("no Redis: set INGEST_REDIS_URL, or run `ingest up`")
    broker.connect_patiently(url)
    _serve_role_metrics(settings, "worker", None)
    celery_app(url).worker_main([*quiet_args(settings), "worker", "--loglevel", settings.log_level.upper(), *ctx.args])


@cli.command()
def beat() -> None:
    """The periodic scheduler alone; a second one waits on standby instead of doubling the schedule."""
    from worker.leader import Leadership

    settings = setup("beat")
    seed_feeds(settings, open_store(settings))
    url = broker.served_redis_url(settings)
    if url is None:
        raise ServiceError("no Redis: set INGEST_REDIS_URL, or run `ingest up`")
    leadership = Leadership(broker.connect_patiently(url))
    _serve_role_metrics(settings, "beat", url)  # a scheduler on standby serves too: it is alive
    stop = threading.Event()
    stop_on_signals(stop)
    if not leadership.wait_to_lead(stop):
        return
    _exit_on_signals(leadership)  # until Celery installs its own handlers, a stop request must still stop us
    from celery import signals as celery_signals

    celery_signals.beat_init.connect(_stop_between_ticks, weak=False)
    leadership.keep()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.data_dir / "beat-schedule"
    try:
        sending_app(url).start(
            [*quiet_args(settings), "beat", "--loglevel", settings.log_level.upper(), "--schedule", str(schedule)]
        )
    finally:
        leadership.release()


def seed_feeds(settings: Settings, store_url: str) -> None:
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


def stop_on_signals(stop: threading.Event) -> None:
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())


def _stop_between_ticks(sender, **_kwargs) -> None:
    """Celery beat's own SIGTERM handler closes the schedule from inside the handler, under a tick
    that may be using it, then again on the way out: seen failing as "invalid operation on closed
    shelf", exit 1. Instead a stop request ends the loop after the tick in hand (a second at most),
    and the schedule is saved once, as the loop ends."""
    import signal

    def stop(*_args) -> None:
        sender._is_shutdown.set()  # what Service.stop() sets, without its logging inside a handler

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def _exit_on_signals(leadership) -> None:
    import signal

    def leave(*_args) -> None:
        # Not SystemExit: raised inside an import (Celery's start-up imports a lot) Python may
        # swallow it ("Exception ignored in _get_module_lock"), and the scheduler runs on, seen.
        leadership.release()
        os._exit(0)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, leave)
