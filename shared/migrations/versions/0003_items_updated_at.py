"""items.updated_at: when the input says its content last changed (dateModified, feed `updated`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # A plain DateTime, as the models' UTCDateTime stores it (naive UTC): frozen here, whatever the
    # models become. Adding a nullable column is in place on SQLite and PostgreSQL: no copy of items.
    op.add_column("items", sa.Column("updated_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch_op:
        batch_op.drop_column("updated_at")
