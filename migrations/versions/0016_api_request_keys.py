"""service clients' idempotency keys for POST /api/requests

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 20:50:00
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import app.db


revision: str = "0016"
down_revision: Union[str, None] = "0015"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "api_request_key",
        sa.Column("client", sa.String(length=28), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["access_request.id"]),
        sa.PrimaryKeyConstraint("client", "key"),
    )


def downgrade() -> None:
    op.drop_table("api_request_key")
