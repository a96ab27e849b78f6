"""grant indexes that keep the sweeps O(due): open grants by end, ended grants by end time

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10 10:00:00

- `ix_grant_open_expires_at` on grant ((CASE WHEN ended_at IS NULL THEN expires_at ELSE NULL END)):
  the end of each grant still held (request active, revoking or revoke_failed), NULL once
  it ended. The sweep's due revokes, the revokes to hand the broker, expiry notices and the
  overdue figure of /healthz and the metrics read a range of it, so their cost follows the
  open grants, never the history. An expression, not a partial index on expires_at: the
  database keeps statistics of the expression (PostgreSQL: open grants end in the future),
  so the planner starts from the few due grants instead of every active request. Queries
  must use the same expression (app.queries.open_end). It replaces `ix_grant_expires_at`.
  A later batch migration of `grant` on SQLite must create it again (SQLite's reflection
  skips expression indexes).
- `ix_grant_ended_at` on grant (ended_at) WHERE ended_at IS NOT NULL: grants that ended,
  by when; "ended since T" (reconciliation's recently ended grants) reads a range of it.
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0009"
down_revision: Union[str, None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ENDED = sa.text("ended_at IS NOT NULL")
# As app.models.OPEN_END_SQL (with PostgreSQL's own line breaks, for autogenerate).
OPEN_END = "\nCASE\n    WHEN ended_at IS NULL THEN expires_at\n    ELSE NULL\nEND"


def upgrade() -> None:
    op.create_index(
        "ix_grant_open_expires_at",
        "grant",
        [sa.text(f"({OPEN_END})")],
    )
    op.create_index(
        "ix_grant_ended_at",
        "grant",
        ["ended_at"],
        postgresql_where=ENDED,
        sqlite_where=ENDED,
    )
    op.drop_index("ix_grant_expires_at", table_name="grant")


def downgrade() -> None:
    op.create_index("ix_grant_expires_at", "grant", ["expires_at"])
    op.drop_index("ix_grant_ended_at", table_name="grant")
    op.drop_index("ix_grant_open_expires_at", table_name="grant")
