"""The store's schema, kept by Alembic (shared/migrations) on SQLite and PostgreSQL.

upgrade_schema() brings a database to the code's revision: an empty one gets every table at once
(create_all, then stamped, as Alembic's cookbook does it), an older one runs each migration in
order, a database from before migrations (schema_meta said version 1) is first stamped as 0001.
`ingest up` and `ingest migrate` upgrade; every other process only checks (ensure_schema), so that
on a shared database one migrate step runs while the other roles wait for it.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from shared import models  # noqa: F401  (registers every table on SQLModel.metadata, for create_all)
from shared.db import get_engine
from shared.errors import ServiceError
from shared.migrations import HEAD
from shared.redact import mask_secrets

log = structlog.get_logger(__name__)

LEGACY_REVISION = "0001"  # tables made by create_all before migrations; schema_meta said "1"
# Any fixed number: serialises migrations between processes (and hosts) starting at once on PostgreSQL.
SCHEMA_LOCK_ID = 0x1E57


@dataclass(frozen=True)
class SchemaState:
    revision: str | None  # None: an empty database, its tables made at the first start
    head: str = HEAD

    @property
    def current(self) -> bool:
        return self.revision == self.head

    @property
    def behind(self) -> bool:
        return self.revision is not None and not self.current and self.revision in _known_revisions()


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def _config(connection: Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "shared:migrations")
    config.attributes["connection"] = connection
    return config


def _revision_of(connection: Connection) -> str | None:
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if "schema_meta" in tables:
        value = connection.execute(text("SELECT value FROM schema_meta WHERE key = 'schema_version'")).scalar()
        if value == "1":
            return LEGACY_REVISION
        raise ServiceError(f"the store says schema version {value}, which no ingest release wrote")
    if "items" in tables:
        raise ServiceError("the database has ingest's tables but no schema revision: not a store ingest can upgrade")
    return None


def schema_state(url: str) -> SchemaState:
    with get_engine(url).connect() as connection:
        return SchemaState(_revision_of(connection))


def upgrade_schema(url: str) -> SchemaState:
    """The store brought to HEAD; the state it was found in is returned. Safe when several start at once."""
    with _sqlite_file_lock(url):
        return _upgrade(url)


def _upgrade(url: str) -> SchemaState:
    """upgrade_schema's work, the SQLite lock file held by the caller."""
    from alembic import command

    with _locked_transaction(url) as connection:
        found = SchemaState(_revision_of(connection))
        if found.current:
            return found
        if found.revision is not None and not found.behind:
            raise _ahead(url, found)
        config = _config(connection)
        if found.revision is None:
            SQLModel.metadata.create_all(connection)
            command.stamp(config, HEAD)
            return found
        if "alembic_version" not in inspect(connection).get_table_names():
            command.stamp(config, LEGACY_REVISION)
        command.upgrade(config, HEAD)
    log.info("store.migrated", store=mask_secrets(url), from_revision=found.revision, to_revision=HEAD)
    return found


def ensure_schema(url: str) -> None:
    """A current store is used as it is (one look, no Alembic); an empty one gets its tables; an older
    or newer one is refused with the step that fixes it."""
    # On SQLite, under the lock file: a store being created by a process starting at the same
    # moment (its first connection turning on WAL, its tables half made) is not looked at mid-way.
    with _sqlite_file_lock(url):
        state = schema_state(url)
        if state.revision is None:
            _upgrade(url)
            return
    if state.current:
        return
    if state.behind:
        raise ServiceError(
            f"the store {mask_secrets(url)} is at schema revision {state.revision}, this ingest needs {HEAD}: "
            "run `ingest migrate` (or `ingest up`, which migrates at start)"
        )
    raise _ahead(url, state)


def _ahead(url: str, state: SchemaState) -> ServiceError:
    return ServiceError(
        f"the store {mask_secrets(url)} is at schema revision {state.revision}, unknown to this ingest "
        f"(it knows up to {HEAD}): a newer ingest migrated it; upgrade this one"
    )


@contextmanager
def _locked_transaction(url: str) -> Iterator[Connection]:
    """One transaction that no other process migrating the same store runs beside (on SQLite, the
    caller holds the lock file)."""
    engine = get_engine(url)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SCHEMA_LOCK_ID})
        yield connection


@contextmanager
def _sqlite_file_lock(url: str) -> Iterator[None]:
    """SQLite runs DDL outside a transaction and has no advisory lock: a lock file beside the
    database serialises `ingest up`, its children and a command started at the same moment."""
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


def new_migration(message: str) -> Path:
    """A developer's step: the next numbered migration, autogenerated from the difference between
    the models and a scratch store built by every migration so far. Returns the file it wrote."""
    import tempfile

    from alembic import command
    from sqlalchemy import create_engine

    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{scratch}/scratch.db")
        with engine.begin() as connection:
            config = _config(connection)
            command.upgrade(config, "head")
            script = command.revision(
                config, message=message, autogenerate=True, rev_id=f"{int(_known_head()) + 1:04d}"
            )
        engine.dispose()
    return Path(script.path)


def _known_head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()
