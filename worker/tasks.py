"""Thin task shells with stable names. All the logic lives in shared.pipeline."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache

import redis.exceptions
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
import structlog
from celery import current_app, shared_task
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from shared import hooks, pipeline, store, subscriptions
from shared.db import session_scope
from shared.deliveries import Deliveries
from shared.dedup import NearDuplicateIndex, Placement, ensure_compact_hashes
from shared.events import Event, event, publish
from shared.feeds import MAX_REDIRECTS, FetchLimits, safe_client
from shared.metrics import FEED_POLLS, ITEMS
from shared.models import Feed, Hook
from shared.parsers import format_name
from shared.polling import PollReport, poll_feed
from shared.messages import Batch, RawInput
from shared.redact import mask_secrets
from shared.settings import get_settings
from worker.broker import HOOKS_QUEUE, QUEUE

log = structlog.get_logger(__name__)

REDIS_RETRIES = 15  # with the backoff below: about a minute of Redis away before a task gives up

# Worth another try: the database locked or away, Redis away. Bad input is never retried.
TRANSIENT_ERRORS = (OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
OUTCOME_EVENTS = {
    "stored": "item.stored",
    "duplicate": "item.duplicate",
    "redelivered": "item.redelivered",
    "failed": "input.failed",
}


@lru_cache(maxsize=1)
def _context() -> pipeline.Context:
    return pipeline.Context.from_settings(get_settings())


@lru_cache(maxsize=1)
def _patient_redis() -> redis.Redis:
    """The broker's Redis for a task's own calls (the index, the delivery marks, the events), one
    client a process: a restart of Redis is waited out (capped backoff, about a minute in all)
    instead of failing the task into a retry that cannot be sent either."""
    return redis.Redis.from_url(
        current_app.conf.broker_url,
        socket_timeout=30,
        retry=Retry(ExponentialBackoff(cap=5, base=0.2), REDIS_RETRIES),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )


@lru_cache(maxsize=1)
def _index() -> NearDuplicateIndex:
    # The index lives in the broker's Redis: shared by every worker on every machine.
    client = _patient_redis()
    ensure_compact_hashes(client)
    return NearDuplicateIndex(client, get_settings().near_duplicate_threshold)


def log_outcome(outcome: store.Outcome, raw: RawInput, started: float, placement: Placement | None) -> None:
    ITEMS.labels(format=format_name(raw.name or raw.ref), outcome=outcome.outcome).inc()
    fields = {
        "origin": raw.ref,
        "kind": raw.kind,
        "outcome": outcome.outcome,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if isinstance(outcome, store.Failed):
        log.warning(OUTCOME_EVENTS["failed"], reason=outcome.reason, **fields)
        return
    if placement is not None:
        fields |= {
            "cluster_id": placement.cluster_id,
            "matched_item_id": placement.matched_item_id,
            "similarity": placement.similarity,
        }
    log.info(OUTCOME_EVENTS[outcome.outcome], item_id=outcome.item_id, **fields)


@lru_cache(maxsize=1)
def _deliveries() -> Deliveries:
    return Deliveries(_patient_redis())


def ingest_message(task_id: str, inputs: list[RawInput]) -> list[list[store.Outcome]]:
    """A message's inputs together, in one transaction; but one at a time when the message was being
    handled by a worker process that died, so that an input that kills workers is found and fails alone."""
    deliveries = _deliveries()
    deaths = deliveries.start_message(task_id)
    try:
        if deaths == 0 and len(inputs) > 1:
            return ingest_batch(inputs)
        return [ingest_alone(deliveries, raw) for raw in inputs]
    finally:
        deliveries.end_message(task_id)


def ingest_alone(deliveries: Deliveries, raw: RawInput) -> list[store.Outcome]:
    """One input; a failure, its bytes kept, once it has killed worker_kills_max worker processes."""
    kills = deliveries.start_input(raw.arrival_id)
    try:
        if kills >= get_settings().worker_kills_max:
            return store_and_place([pipeline.killed_the_worker(raw, kills)], True, time.perf_counter())[0]
        return ingest_batch([raw])[0]
    finally:
        deliveries.end_input(raw.arrival_id)


def ingest_batch(inputs: list[RawInput]) -> list[list[store.Outcome]]:
    started = time.perf_counter()
    prepared = pipeline.prepare_all(inputs, _context())
    return store_and_place(prepared, get_settings().keep_raw, started)


def store_and_place(prepared: list[pipeline.Prepared], keep_raw: bool, started: float) -> list[list[store.Outcome]]:
    """Store every prepared input in one transaction, then place the new items in their
    near-duplicate clusters in one call to Redis (also after a crash between the two: an item
    without a cluster gets one when its message comes again)."""
    settings = get_settings()
    inputs = [one.raw for one in prepared]
    outcomes = pipeline.store_batch(settings.store_url, prepared, keep_raw)
    item_ids = [o.item_id for per_input in outcomes for o in per_input if getattr(o, "item_id", None) is not None]
    placements: dict[int, Placement] = {}
    first_arrivals: dict[int, str] = {}
    if item_ids:
        with session_scope(settings.store_url) as session:
            placements = pipeline.place_all(session, _index(), item_ids)
            first_arrivals = store.first_arrivals(session, _redelivered_items(outcomes))
    for raw, per_input in zip(inputs, outcomes):
        for outcome in per_input:
            log_outcome(outcome, raw, started, placements.get(getattr(outcome, "item_id", None)))
    publish(_patient_redis(), outcome_events(prepared, outcomes, placements, first_arrivals), settings.events_maxlen)
    return outcomes


def _redelivered_items(outcomes: list[list[store.Outcome]]) -> list[int]:
    return [o.item_id for per_input in outcomes for o in per_input if isinstance(o, store.Redelivered) and o.item_id]


def outcome_events(
    prepared: list[pipeline.Prepared],
    outcomes: list[list[store.Outcome]],
    placements: dict[int, Placement],
    first_arrivals: dict[int, str],
) -> list[Event]:
    """The events of a message's outcomes, in order. A message delivered again (its worker died after
    the commit, or a retry) emits its arrivals' events again: consumers get each at least once."""
    found: list[Event] = []
    for one, per_input in zip(prepared, outcomes):
        for write, outcome in zip(one.writes, per_input):
            found += _events_of(one.raw, write, outcome, placements, first_arrivals)
    return found


def _events_of(
    raw: RawInput,
    write: store.Write,
    outcome: store.Outcome,
    placements: dict[int, Placement],
    first_arrivals: dict[int, str],
) -> list[Event]:
    origin = {"origin": raw.ref, "kind": raw.kind, "entry_id": write.arrival.entry_id, "arrival": write.arrival.key}
    if isinstance(write, store.FailureWrite) or isinstance(outcome, store.Failed):
        reason = outcome.reason if isinstance(outcome, store.Failed) else write.reason
        return [event("input.failed", reason=reason, **origin)]
    if outcome.item_id is None:
        return []
    placement = placements.get(outcome.item_id)
    stored = isinstance(outcome, store.Stored) or first_arrivals.get(outcome.item_id) == write.arrival.key
    item = write.item
    if stored:
        found = [
            event(
                "item.stored",
                item_id=outcome.item_id,
                title=item.title,
                source=item.source,
                url=item.url,
                cluster_id=placement and placement.cluster_id,
                **origin,
            )
        ]
    else:
        found = [event("item.duplicate", item_id=outcome.item_id, **origin)]
    if placement is not None and placement.matched_item_id is not None:
        found.append(
            event(
                "item.clustered",
                item_id=outcome.item_id,
                cluster_id=placement.cluster_id,
                matched_item_id=placement.matched_item_id,
                similarity=placement.similarity,
            )
        )
    return found


def send_batch(batch: Batch) -> None:
    current_app.send_task("ingest.process", args=[batch.to_message()], queue=QUEUE)


@shared_task(name="feeds.poll_due", ignore_result=True)
def poll_due() -> None:
    """Queue one fetch per feed that is due; the claim in the store keeps a feed from being queued twice."""
    settings = get_settings()
    lease = settings.feeds_timeout_seconds * (MAX_REDIRECTS + 1) + settings.task_time_limit
    try:
        with session_scope(settings.store_url) as session:
            due = subscriptions.claim_due(session, datetime.now(UTC), lease)
    except OperationalError as exc:
        _tick_skipped("feeds.tick_skipped", exc)  # the next tick looks again
        return
    for feed_id in due:
        current_app.send_task("feeds.fetch", args=[feed_id])


@shared_task(
    name="feeds.fetch",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=None,
)
def fetch_feed(feed_id: int) -> None:
    """Poll one feed and log one line about it."""
    settings = get_settings()
    limits = FetchLimits(
        settings.feeds_timeout_seconds,
        settings.feeds_max_bytes,
        settings.feeds_user_agent,
        settings.feeds_allow_private,
    )
    with session_scope(settings.store_url) as session, safe_client(limits) as client:
        feed = session.get(Feed, feed_id)
        if feed is None or not feed.enabled:
            return
        report = poll_feed(
            session,
            feed,
            client,
            limits,
            settings.feed_policy,
            send_batch,
            datetime.now(UTC),
            settings.keep_raw,
            resend_after=settings.visibility_timeout,
        )
    log_poll(report)
    if report.error is not None:
        failed = event(
            "feed.failed",
            feed=mask_secrets(report.url),
            status=report.status,
            error=mask_secrets(report.error),
            scope="gone" if not report.enabled else "network" if report.network else "feed",
        )
        publish(_patient_redis(), [failed], settings.events_maxlen)


def log_poll(report: PollReport) -> None:
    FEED_POLLS.labels(status=str(report.status) if report.status is not None else "error").inc()
    fields = {
        "feed": report.url,
        "status": report.status,
        "new_entries": report.new_entries,
        "duration_ms": report.duration_ms,
        "next_poll": report.next_poll and report.next_poll.isoformat(),
    }
    if report.error is None:
        log.info("feed.polled", outcome="ok" if report.status == 200 else "not_modified", **fields)
    elif not report.enabled:
        log.warning("feed.polled", outcome="gone", error=report.error, **fields)
    else:
        log.warning(
            "feed.polled", outcome="error", error=report.error, scope="network" if report.network else "feed", **fields
        )


@shared_task(
    bind=True,
    name="ingest.process",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=None,  # a transient error never turns an input into a loss; the backoff caps the cost
)
def process_batch(self, message: dict) -> None:
    """Ingest every input of one message: one transaction for all, each input's outcome its own."""
    try:
        batch = Batch.model_validate(message)
    except ValidationError as exc:
        log.error("message.invalid", error=str(exc).splitlines()[0])
        return
    ingest_message(self.request.id, batch.inputs)


def _tick_skipped(name: str, exc: OperationalError) -> None:
    """The database away or locked at a scheduler's tick: one line, not Celery's traceback."""
    log.warning(name, error=mask_secrets(str(exc.orig or exc).strip().splitlines()[0]))


# -- webhooks: acknowledged on receipt (acks_late=False), as everything they do is kept in Redis: a
# tick or round lost with its worker costs nothing, the next tick starts it again. So they never
# count as work in flight for `ingest wait`.


@shared_task(name="hooks.tick", ignore_result=True, acks_late=False)
def hooks_tick() -> None:
    """Hand the new events to each webhook's queue, then start a delivery round of each hook that is due."""
    settings = get_settings()
    try:
        with session_scope(settings.store_url) as session:
            refs = hooks.hook_refs(subscriptions.all_hooks(session))
    except OperationalError as exc:
        _tick_skipped("hooks.tick_skipped", exc)
        return
    client = _patient_redis()
    report = hooks.fan_out(client, refs, settings.hooks_max_pending)
    urls = {ref.id: hooks.shown_url(ref.url) for ref in refs}
    for hook_id, dropped in report.dropped.items():
        log.warning("hook.events_dropped", hook=urls[hook_id], count=dropped, max_pending=settings.hooks_max_pending)
    if report.vanished:
        log.warning("hooks.events_vanished", count=report.vanished)
    now = time.time()
    for ref in refs:
        if hooks.due(client, ref.id, now):
            expires = max(5.0, settings.hooks_tick_seconds * 5)
            current_app.send_task("hooks.deliver", args=[ref.id], queue=HOOKS_QUEUE, expires=expires)


@shared_task(name="hooks.deliver", ignore_result=True, acks_late=False)
def deliver_hook(hook_id: int) -> None:
    """One delivery round of one webhook: its waiting events POSTed, signed, oldest first."""
    settings = get_settings()
    try:
        with session_scope(settings.store_url) as session:
            row = session.get(Hook, hook_id)
            ref = hooks.hook_refs([row])[0] if row is not None else None
    except OperationalError as exc:
        _tick_skipped("hooks.deliver_skipped", exc)  # the events wait; the next tick starts a round
        return
    if ref is None:
        return  # removed since the tick
    policy = hooks.DeliveryPolicy(
        backoff_base=settings.hooks_backoff_base_seconds,
        backoff_max=settings.hooks_backoff_max_seconds,
        allow_private=settings.feeds_allow_private,
        user_agent=settings.feeds_user_agent,
        lease_seconds=settings.task_time_limit + 60,  # the round's task is killed before its lock lapses
    )
    limits = FetchLimits(settings.hooks_timeout_seconds, 0, settings.feeds_user_agent, settings.feeds_allow_private)
    with safe_client(limits) as http:
        report = hooks.deliver(_patient_redis(), ref, http, policy)
    log_round(ref, report)


def log_round(hook: hooks.HookRef, report: hooks.RoundReport) -> None:
    url = hooks.shown_url(hook.url)
    if report.recovered:
        log.info("hook.recovered", hook=url, delivered=report.delivered)
    elif report.delivered:
        log.info("hook.delivered", hook=url, delivered=report.delivered)
    if report.error is not None:
        log.warning(
            "hook.failed",
            hook=url,
            error=report.error,
            failures=report.failures,
            retry_in_s=round(report.retry_in or 0, 1),
            delivered=report.delivered,
        )
