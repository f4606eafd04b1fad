"""Deadlines, supervision and auto-dispatch on cases.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TIMES = ("due_since", "dispatch_due_at", "dispatched_at", "handled_at")
_FLAGS = ("due_soon", "auto_dispatched")
_COUNTS = ("supervision_level", "reassignments")


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        for name in _TIMES:
            batch.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        for name in _FLAGS:
            batch.add_column(
                sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false())
            )
        for name in _COUNTS:
            batch.add_column(
                sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0"))
            )
        batch.create_index(batch.f("ix_cases_due_at"), ["due_at"], unique=False)
    # Earlier cases carry no deadline history: a due_at an officer gave is taken as running
    # since the case was opened, which only widens its due-soon warning. Dispatched cases
    # keep their first dispatch time from the history, so the KPIs can count them.
    op.execute("UPDATE cases SET due_since = opened_at WHERE due_at IS NOT NULL")
    op.execute(
        "UPDATE cases SET dispatched_at = (SELECT min(h.at) FROM case_history h"
        " WHERE h.case_id = cases.id AND h.action = 'dispatch')"
    )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_index(batch.f("ix_cases_due_at"))
        for name in (*_COUNTS, *_FLAGS, *_TIMES):
            batch.drop_column(name)
