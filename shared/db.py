"""A lazy engine per process (never shared across fork) and session_scope() for one unit of work."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine


SQLITE_BUSY_SECONDS = 30

_engines: dict[tuple[int, str], Engine] = {}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cursor.close()


# libpq's own timeouts, where the URL does not set them: a connection the network lost without a
# word (a dropped route, a proxy gone) must fail and be retried, not hang a task on a read until its
# hard time limit (seen in the drill that cuts PostgreSQL's connections: 300 s). Idle, a dead peer
# is found by keepalives in about 25 s; with data unacknowledged, by tcp_user_timeout.
LIBPQ_TIMEOUTS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def _create(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2"):
        timeouts = {key: value for key, value in LIBPQ_TIMEOUTS.items() if key not in parsed.query}
        return create_engine(url, pool_pre_ping=True, connect_args=timeouts)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def get_engine(url: str) -> Engine:
    """This process's engine for `url`; a forked child gets its own, never its parent's pool."""
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = _create(url)
    return engine


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """One unit of work: committed when the block ends, rolled back if it raises."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
