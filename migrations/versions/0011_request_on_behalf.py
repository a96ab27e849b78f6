"""requests on behalf: who filed a request made for someone else

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 19:00:00
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0011"
down_revision: Union[str, None] = "0010"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("access_request") as batch:
        batch.add_column(sa.Column("requested_by", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_request") as batch:
        batch.drop_column("requested_by")
