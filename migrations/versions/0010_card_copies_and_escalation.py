"""card copies (a request's card in approvers' DMs and watchers' conversations) and the
escalation steps taken

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 18:30:00
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import app.db


revision: str = "0010"
down_revision: Union[str, None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "card_copy",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["access_request.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "channel"),
    )
    op.create_index(op.f("ix_card_copy_request_id"), "card_copy", ["request_id"], unique=False)
    with op.batch_alter_table("access_request") as batch:
        batch.add_column(
            sa.Column("escalated_steps", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("access_request") as batch:
        batch.drop_column("escalated_steps")
    op.drop_index(op.f("ix_card_copy_request_id"), table_name="card_copy")
    op.drop_table("card_copy")
