"""shared accounts checked out to one holder at a time

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 19:50:00
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import app.db


revision: str = "0014"
down_revision: Union[str, None] = "0013"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "account_checkout",
        sa.Column("resource", sa.String(length=700), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("taken_at", app.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["access_request.id"]),
        sa.PrimaryKeyConstraint("resource"),
        sa.UniqueConstraint("request_id"),
    )


def downgrade() -> None:
    op.drop_table("account_checkout")
