"""Schema migrations (Alembic) on SQLite and PostgreSQL: a version-1 store upgrades in place, every row kept.

tests/fixtures/store-v1.db was written by ingest before migrations existed (commit 9e5afe7, `ingest
up` over the sample, the same article in five formats, held-out files, two bad files and a failing
feed): 18 items, 23 origins, 4 failures, a feed, 22 ledger rows, 21 raw blobs, schema_meta = 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, inspect, text

from tests.conftest import PG_URL, ROOT, _postgres_schema_url

V1_STORE = ROOT / "tests" / "fixtures" / "store-v1.db"
DATA_TABLES = ("items", "origins", "failures", "feeds", "feed_entries", "taken_files", "submissions", "raw_blobs")


def _ingest(folder: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env |= {"INGEST_DATABASE_URL": database_url, "INGEST_DATA_DIR": str(folder / "data"), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )


def _rows(url: str, columns: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """Every row of the data tables; of the given columns only (those a store had before it was
    migrated: columns added since are checked on their own)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: sorted(
                    map(tuple, connection.execute(text(f"SELECT {_list(columns, table)} FROM {table}"))), key=repr
                )
                for table in DATA_TABLES
            }
    finally:
        engine.dispose()


def _list(columns: dict[str, list[str]] | None, table: str) -> str:
    return ", ".join(columns[table]) if columns else "*"


def _columns(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        found = inspect(engine)
        return {table: [column["name"] for column in found.get_columns(table)] for table in DATA_TABLES}
    finally:
        engine.dispose()


def _copy_into_version_1(source_url: str, target_url: str) -> None:
    """The version-1 store's rows, in a version-1 schema built by migration 0001 on another database."""
    from alembic import command

    from shared.schema import _config

    target = create_engine(target_url)
    with target.begin() as connection:
        command.upgrade(_config(connection), "0001")
        connection.execute(text("DROP TABLE alembic_version"))  # as create_all left it: no Alembic yet
    source = create_engine(source_url)
    tables = MetaData()
    tables.reflect(source)
    with source.connect() as reading, target.begin() as writing:
        for table in tables.sorted_tables:
            rows = [dict(row._mapping) for row in reading.execute(table.select())]
            if rows:
                writing.execute(table.insert(), rows)
    source.dispose()
    target.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def version_1_store(request, tmp_path) -> Iterator[str]:
    """The committed version-1 store: the file itself on SQLite, its rows in a fresh schema on PostgreSQL."""
    copy = tmp_path / "store-v1.db"
    shutil.copyfile(V1_STORE, copy)
    sqlite_url = f"sqlite:///{copy}"
    if request.param == "sqlite":
        yield sqlite_url
        return
    if not PG_URL:
        pytest.skip("INGEST_TEST_DATABASE_URL is not set")
    for url in _postgres_schema_url():
        _copy_into_version_1(sqlite_url, url)
        yield url


def test_head_names_the_newest_migration():
    """shared.migrations.HEAD, read without loading Alembic, is the scripts' head."""
    from alembic.script import ScriptDirectory

    from shared.migrations import HEAD
    from shared.schema import _config

    assert ScriptDirectory.from_config(_config()).get_heads() == [HEAD]


def test_the_migrations_build_exactly_the_models_tables(db_url, tmp_path):
    """Every migration run from nothing gives the schema the models declare: no drift either way."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    from alembic import command
    from shared.schema import _config

    fresh = f"sqlite:///{tmp_path / 'migrated.db'}" if db_url.startswith("sqlite") else None
    for url in [fresh] if fresh else _postgres_schema_url():
        engine = create_engine(url)
        with engine.begin() as connection:
            command.upgrade(_config(connection), "head")
            differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
        engine.dispose()
        assert differences == []


def test_a_new_store_gets_every_table_at_its_first_start(tmp_path):
    """`ingest migrate` on an empty database, in a process of its own: the models' tables, stamped at head."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    from shared.migrations import HEAD

    url = f"sqlite:///{tmp_path / 'new.db'}"
    result = _ingest(tmp_path, url, "migrate")
    assert result.stdout.strip().endswith(f"created at schema revision {HEAD}"), result.stderr
    engine = create_engine(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    engine.dispose()


@pytest.mark.slow
def test_a_version_1_store_upgrades_in_place_with_every_row_kept(version_1_store, tmp_path):
    """`ingest migrate` takes a version-1 store to head; every item, origin, failure, feed and ledger row stays."""
    from shared.migrations import HEAD

    version_1_columns = _columns(version_1_store)
    before = _rows(version_1_store, version_1_columns)
    assert len(before["items"]) == 18 and len(before["origins"]) == 23 and len(before["taken_files"]) == 22

    refused = _ingest(tmp_path, version_1_store, "status")
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert f"is at schema revision 0001, this ingest needs {HEAD}: run `ingest migrate`" in refused.stderr
    doctor = _ingest(tmp_path, version_1_store, "doctor")
    assert doctor.returncode == 1 and f"behind this ingest's {HEAD}" in doctor.stdout

    migrated = _ingest(tmp_path, version_1_store, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip().endswith(f"migrated from schema revision 0001 to {HEAD}")
    assert _rows(version_1_store, version_1_columns) == before
    engine = create_engine(version_1_store)
    assert "schema_meta" not in inspect(engine).get_table_names()
    with engine.connect() as connection:  # 0003: a column no version-1 item has a value for
        assert connection.execute(text("SELECT COUNT(*) FROM items WHERE updated_at IS NOT NULL")).scalar() == 0
    engine.dispose()

    again = _ingest(tmp_path, version_1_store, "migrate")
    assert again.stdout.strip().endswith(f"is at schema revision {HEAD}: nothing to do")
    exported = _ingest(tmp_path, version_1_store, "export")
    assert exported.returncode == 0 and len(exported.stdout.splitlines()) == 18
    assert "Putin seeks foreign volunteers" in exported.stdout
    assert "schema revision" in _ingest(tmp_path, version_1_store, "doctor").stdout


@pytest.mark.slow
def test_a_store_newer_than_the_code_is_refused_and_left_alone(tmp_path):
    """A revision this ingest does not know (a newer release migrated it): refused, nothing changed."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert _ingest(tmp_path, url, "migrate").returncode == 0
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    for command in ("migrate", "status"):
        result = _ingest(tmp_path, url, command)
        assert result.returncode == 1
        assert "schema revision 9999, unknown to this ingest" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
