"""service clients: non-human requesters of the web's API, with hashed tokens

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 19:40:00
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import app.db


revision: str = "0015"
down_revision: Union[str, None] = "0014"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "service_client",
        sa.Column("name", sa.String(length=28), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("flows", sa.JSON(), nullable=False),
        sa.Column("principal", sa.String(length=320), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )


def downgrade() -> None:
    op.drop_table("service_client")
