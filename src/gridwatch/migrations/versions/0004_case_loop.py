"""The case loop: the open key kept after closing, manual reports, rework, reopening, scores.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("case_key", sa.String(length=140), nullable=True))
        batch.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("location", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("requested_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("rework_count", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(
            sa.Column("reopen_count", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("score", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_cases_case_key"), ["case_key"], unique=False)
    # Cases raised before this revision get the key apply_alarm gave them when it opened them
    # (sensor/rule, test: in front for test cases); manual cases have none. They have no
    # closed_at, so a closed one is never reopened by a recurrence: its closing time is unknown.
    op.execute(
        "UPDATE cases SET case_key = CASE WHEN drill THEN 'test:' ELSE '' END"
        " || sensor_id || '/' || rule_id"
        " WHERE sensor_id IS NOT NULL AND rule_id IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_index(batch.f("ix_cases_case_key"))
        for column in (
            "score",
            "reopen_count",
            "rework_count",
            "requested_due_at",
            "closed_at",
            "location",
            "description",
            "case_key",
        ):
            batch.drop_column(column)
