"""How often each case was found overdue, kept for the KPIs.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("overdue_count", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    # Until now only the history said that a case had run late.
    op.execute(
        "UPDATE cases SET overdue_count = (SELECT count(*) FROM case_history h"
        " WHERE h.case_id = cases.id AND h.action = 'overdue')"
    )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("overdue_count")
