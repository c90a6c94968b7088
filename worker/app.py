"""The Celery app (`celery -A worker.app worker`), configured once from Settings."""

from __future__ import annotations

import gc
import time
import warnings

import structlog
from celery import Celery, signals
from celery.exceptions import SecurityWarning
from kombu import Queue

from shared.schema import ensure_schema
from shared.metrics import TASK_SECONDS
from shared.normalise import warm_up
from shared.logging import configure_logging, configured_process
from shared.settings import Settings, get_settings
from worker.broker import FEEDS_QUEUE, HOOKS_QUEUE, QUEUE, running_redis_url

log = structlog.get_logger(__name__)

# Celery warns at every start of a worker run as root. Its danger is pickle, which this app
# refuses (JSON only, below); the README says so once, and the image runs as a user anyway.
warnings.filterwarnings(
    "ignore", message="You're running the worker with superuser privileges", category=SecurityWarning
)
# Celery also warns, over several lines, at every connection loss that the setting
# worker_cancel_long_running_tasks_on_connection_loss is False: it is, by choice (see below).
warnings.filterwarnings("ignore", message=r"\s*In Celery 5.1 we introduced an optional breaking change")


def celery_config(settings: Settings, broker_url: str | None) -> dict:
    return {
        "broker_url": broker_url,
        "broker_connection_retry_on_startup": True,
        # JSON only: nothing on the queue can execute code, and a root worker agrees to run.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # Nothing reads task results: the store is the result.
        "task_ignore_result": True,
        "result_backend": None,
        "task_default_queue": QUEUE,
        "task_queues": (Queue(QUEUE), Queue(FEEDS_QUEUE), Queue(HOOKS_QUEUE)),
        "task_routes": {"feeds.*": {"queue": FEEDS_QUEUE}, "hooks.*": {"queue": HOOKS_QUEUE}},
        "beat_schedule": {
            "feeds.poll_due": {
                "task": "feeds.poll_due",
                "schedule": settings.feeds_tick_seconds,
                # A tick nobody ran in time is worthless: the next one looks again.
                "options": {"queue": FEEDS_QUEUE, "expires": max(5.0, settings.feeds_tick_seconds * 5)},
            },
            "hooks.tick": {
                "task": "hooks.tick",
                "schedule": settings.hooks_tick_seconds,
                "options": {"queue": HOOKS_QUEUE, "expires": max(5.0, settings.hooks_tick_seconds * 5)},
            },
        },
        # A message is acknowledged only once its work is committed; a worker killed mid-task
        # (or its pool process) gives the message back instead of losing it.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # A hard limit only: the pool process running past it is killed, its message delivered again
        # (task_reject_on_worker_lost), and an input that keeps doing it fails alone after
        # worker_kills_max deaths (worker.tasks). No soft limit: its exception lands wherever the
        # task happens to be, and a parser's catch-all then recorded an innocent input as a failure
        # (seen in the Redis-restart drill: a task that waited out Redis, its soft limit 1 s).
        "task_time_limit": settings.task_time_limit,
        "broker_transport_options": {
            # An unacknowledged message (its worker died with no goodbye) is delivered again after
            # this long. It must exceed the longest task, or a slow task would run twice; twice is
            # harmless (every write is idempotent) but wasteful.
            "visibility_timeout": settings.visibility_timeout,
            # Look for such messages every 10 s (kombu's default looks once in 10 x 10 s), or
            # more often with a short timeout, so a message is back within 1.5 timeouts.
            "unacked_restore_interval": min(10, max(1, settings.visibility_timeout // 2)),
            "unacked_restore_throttle": 1,
            # Message bodies as they are (JSON text) inside kombu's JSON envelope, not base64 of it:
            # a third fewer bytes in Redis, on the wire and in a queued backlog, and 1.7 ms less CPU
            # a 100-file message. Every message says its own encoding and is decoded by it, so
            # messages of either kind are read by workers of either setting.
            "body_encoding": None,
        },
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        # Task events are what Flower shows (the compose stack's monitoring profile): off unless asked.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        # Redis lost: running tasks go on (their own Redis calls wait for it, worker.tasks) and are
        # acknowledged once it is back. Cancelling them instead (True) was seen to wedge the worker
        # (billiard failing to send a cancelled task's result: "Unrecoverable error").
        "worker_cancel_long_running_tasks_on_connection_loss": False,
    }


def create_app(settings: Settings, broker_url: str | None = None, with_tasks: bool = True) -> Celery:
    """The app; `with_tasks=False` for processes that only send tasks by name (the watcher, the
    scheduler, `ingest submit`): they need not import the pipeline, a second of CPU and tens of MB each."""
    app = Celery("ingest", set_as_current=True)
    app.conf.update(celery_config(settings, broker_url or running_redis_url(settings)))
    if with_tasks:
        # Lazily: imported when a worker starts (before its pool forks), not by whoever imports this.
        app.autodiscover_tasks(["worker"], related_name="tasks")
    return app


@signals.setup_logging.connect
def _use_our_logging(**_kwargs) -> None:
    # Connecting here stops Celery from installing its own handlers: one handler, no doubled lines.
    # `ingest worker` and `ingest beat` have set logging up already; `celery -A worker.app` has not.
    if configured_process() is None:
        configure_logging(get_settings(), process="worker")


@signals.worker_init.connect
def _ensure_schema_and_warm_up(**_kwargs) -> None:
    ensure_schema(get_settings().store_url)
    # Load the language model once, before the pool forks: every pool process inherits it
    # (its pages shared), instead of each loading its own copy before its first task.
    warm_up()


@signals.worker_process_init.connect
def _warm_up(**_kwargs) -> None:
    warm_up()  # a no-op where the model came with the fork; loads it where the pool does not fork
    # Everything made so far lives as long as the process (modules, the model, the app): out of the
    # collector's sight, so a full collection scans only what tasks made since. Otherwise each one
    # walks some 150,000 objects (about 90 ms, once every few thousand articles: 3 % of a burst).
    gc.freeze()


_task_started: dict[str, float] = {}


@signals.task_prerun.connect
def _bind_task(task_id: str, task, **_kwargs) -> None:
    structlog.contextvars.bind_contextvars(task_id=task_id, task=task.name)
    _task_started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _unbind_task(task_id: str, task, **_kwargs) -> None:
    structlog.contextvars.unbind_contextvars("task_id", "task", "origin", "item_id")
    started = _task_started.pop(task_id, None)
    if started is not None:
        TASK_SECONDS.labels(task=task.name).observe(time.perf_counter() - started)


@signals.task_retry.connect
def _log_retry(request, reason=None, **_kwargs) -> None:
    # A transient error (the database locked, away or full; Redis away) is retried with backoff;
    # Celery says so at INFO under a logger kept quiet: this is the one line an operator sees.
    # (Celery also sends this signal with no reason, for a task put back after a connection loss.)
    text = str(reason).strip().splitlines()[0] if reason is not None and str(reason).strip() else "connection lost"
    log.warning("task.retrying", task=getattr(request, "task", None), task_id=getattr(request, "id", None), error=text)


app = create_app(get_settings())
