"""Rebuilding the near-duplicate index from the store: on demand (`ingest reindex`), and once after an
upgrade that changed its layout (`ingest migrate` in the foreground, `ingest up` in the background).

Either way the rebuild is `shared.pipeline.rebuild_index`: safe while workers run, every cluster kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
import structlog
from sqlalchemy.exc import SQLAlchemyError

from shared.dedup import LAYOUT, NearDuplicateIndex, RebuildError, ensure_compact_hashes
from shared.errors import ServiceError
from shared.pipeline import Rebuilt, rebuild_index, upgrade_index
from shared.settings import Settings
from worker import broker

log = structlog.get_logger(__name__)

Rebuild = Callable[[str, NearDuplicateIndex, Callable[[int], None]], "Rebuilt | None"]
UPGRADE_RETRY_SECONDS = 15  # a rebuild already running (or one that died, until its hold expires)


def _index(settings: Settings, redis_url: str) -> NearDuplicateIndex:
    client = broker.connect(redis_url)
    ensure_compact_hashes(client)
    return NearDuplicateIndex(client, settings.near_duplicate_threshold)


def rebuild_with_progress(settings: Settings, store_url: str, total: int, upgrade_only: bool = False) -> Rebuilt | None:
    """The index rebuilt (or, with upgrade_only, rebuilt only when its layout is old: None when it is
    current) with a progress bar on stderr; a rebuild that cannot run is a one-line ServiceError."""
    from rich.progress import Progress

    from worker.cli_common import stderr_console

    rebuild: Rebuild = upgrade_index if upgrade_only else rebuild_index
    with broker.broker_url(settings) as redis_url:
        index = _index(settings, redis_url)
        if upgrade_only and index.live_layout() == LAYOUT:
            return None
        label = f"rebuilding the near-duplicate index in layout {LAYOUT}" if upgrade_only else "reindexing"
        with Progress(transient=False, console=stderr_console()) as progress:
            task = progress.add_task(label, total=total)
            try:
                return rebuild(store_url, index, lambda done: progress.advance(task, done))
            except RebuildError as exc:
                raise ServiceError(str(exc)) from None


def upgrade_until_current(settings: Settings, store_url: str, redis_url: str) -> None:
    """`ingest up`, in a thread: an index in an old layout rebuilt while the service runs (items stored
    meanwhile wait unplaced and are placed at the end); tried again while another rebuild holds it."""
    # A daemon thread: it ends with the process; a rebuild's hold on the index then expires by itself.
    while True:
        try:
            index = _index(settings, redis_url)
            if index.live_layout() == LAYOUT:
                return
            log.info("index.upgrade_started", from_layout=index.live_layout(), to_layout=LAYOUT)
            rebuilt = upgrade_index(store_url, index, lambda _done: None)
            if rebuilt is not None:
                log.info("index.upgraded", layout=LAYOUT, restored=rebuilt.restored, placed=rebuilt.placed)
            return
        except (RebuildError, ServiceError, redis.exceptions.RedisError, SQLAlchemyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("index.upgrade_delayed", error=reason, retry_in_seconds=UPGRADE_RETRY_SECONDS)
        time.sleep(UPGRADE_RETRY_SECONDS)
