"""Thin task shells with stable names. All the logic lives in shared.pipeline."""

from __future__ import annotations

import time
from functools import lru_cache

import redis.exceptions
import structlog
from celery import shared_task
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from shared import pipeline, store
from shared.db import session_scope
from shared.messages import Batch, RawInput
from shared.settings import get_settings

log = structlog.get_logger(__name__)

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


def log_outcome(outcome: store.Outcome, raw: RawInput, started: float) -> None:
    fields = {"origin": raw.ref, "kind": raw.kind, "outcome": outcome.outcome,
              "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
    if isinstance(outcome, store.Failed):
        log.warning(OUTCOME_EVENTS["failed"], reason=outcome.reason, **fields)
    else:
        log.info(OUTCOME_EVENTS[outcome.outcome], item_id=outcome.item_id, **fields)


def ingest_one(raw: RawInput) -> list[store.Outcome]:
    started = time.perf_counter()
    with session_scope(get_settings().store_url) as session:
        outcomes = pipeline.process(session, raw, _context())
    for outcome in outcomes:
        log_outcome(outcome, raw, started)
    return outcomes


@shared_task(
    name="ingest.process",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=None,  # a transient error never turns an input into a loss; the backoff caps the cost
)
def process_batch(message: dict) -> None:
    """Ingest every input of one message; each input is its own transaction."""
    try:
        batch = Batch.model_validate(message)
    except ValidationError as exc:
        log.error("message.invalid", error=str(exc).splitlines()[0])
        return
    for raw in batch.inputs:
        ingest_one(raw)
