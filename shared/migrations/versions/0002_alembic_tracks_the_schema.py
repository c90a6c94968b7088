"""Alembic's alembic_version table tracks the schema: schema_meta, which said "version 1", goes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.drop_table("schema_meta")


def downgrade() -> None:
    schema_meta = op.create_table(
        "schema_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.bulk_insert(schema_meta, [{"key": "schema_version", "value": "1"}])
