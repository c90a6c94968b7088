"""Alembic's environment: always given a connection by shared.schema, inside its lock and transaction."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import shared.models  # noqa: F401  (the tables, registered on SQLModel.metadata)

connection = context.config.attributes["connection"]
# Batch mode: SQLite alters a table by copying it, and Alembic does the copying.
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
