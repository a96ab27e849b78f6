"""request drafts: a break-glass request waiting for its confirmation, kept on the server

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import app.db


revision: str = "0008"
down_revision: Union[str, None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "request_draft",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("request_draft")
