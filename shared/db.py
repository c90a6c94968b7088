"""A lazy engine per process (never shared across fork) and session_scope() for one unit of work."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, SQLModel, create_engine

from shared.models import SCHEMA_VERSION, SchemaMeta

SQLITE_BUSY_SECONDS = 30
# Any fixed number: serialises schema creation between processes starting at once on PostgreSQL.
SCHEMA_LOCK_ID = 0x1E57
SCHEMA_ATTEMPTS = 3

_engines: dict[tuple[int, str], Engine] = {}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cursor.close()


def _create(url: str) -> Engine:
    parsed = make_url(url)
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


def init_schema(url: str) -> None:
    """Create missing tables and record the schema version; safe when several processes start at once."""
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with _sqlite_schema_lock(url):
                _create_schema(get_engine(url))
            return
        except (OperationalError, IntegrityError) as exc:
            # SQLite has no advisory lock: two processes may both find a table (or the version row)
            # missing; the loser sees "already exists" (or a unique violation), and a second pass
            # finds everything in place.
            lost_race = isinstance(exc, IntegrityError) or "already exists" in str(exc)
            if not lost_race or attempt == SCHEMA_ATTEMPTS - 1:
                raise


@contextmanager
def _sqlite_schema_lock(url: str) -> Iterator[None]:
    """SQLite runs DDL outside a transaction, so `ingest up`, its children and a command started at
    the same moment could each find a table missing: a lock file beside the database serialises them."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        yield
        return
    lock_path = Path(f"{parsed.database}.schema-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _create_schema(engine: Engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SCHEMA_LOCK_ID})
        SQLModel.metadata.create_all(connection)
        found = connection.execute(
            SchemaMeta.__table__.select().where(SchemaMeta.__table__.c.key == "schema_version")
        ).first()
        if found is None:
            connection.execute(_insert_ignore_version(engine.dialect.name))


def _insert_ignore_version(dialect: str):
    """The version row, inserted unless a process starting at the same moment inserted it first."""
    values = {"key": "schema_version", "value": str(SCHEMA_VERSION)}
    if dialect == "sqlite":
        return sqlite.insert(SchemaMeta.__table__).values(values).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(SchemaMeta.__table__).values(values).on_conflict_do_nothing()
    return SchemaMeta.__table__.insert().values(values)


def schema_version(url: str) -> int | None:
    with get_engine(url).connect() as connection:
        row = connection.execute(
            SchemaMeta.__table__.select().where(SchemaMeta.__table__.c.key == "schema_version")
        ).first()
    return int(row.value) if row else None
