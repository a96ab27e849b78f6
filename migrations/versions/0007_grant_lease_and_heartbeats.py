"""grant lease (granting state) and process heartbeats

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:40:00
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import app.db


revision: str = "0007"
down_revision: Union[str, None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("access_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_until", app.db.UTCDateTime(), nullable=True))
    op.create_table(
        "heartbeat",
        sa.Column("process", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("at", app.db.UTCDateTime(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("process"),
    )
    op.create_index(op.f("ix_heartbeat_kind"), "heartbeat", ["kind"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_heartbeat_kind"), table_name="heartbeat")
    op.drop_table("heartbeat")
    with op.batch_alter_table("access_request", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")
