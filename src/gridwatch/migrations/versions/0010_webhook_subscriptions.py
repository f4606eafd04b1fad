"""Webhook subscriptions managed through the API: rotation, description, version, soft delete.

Columns are only added: SQLite rebuilds a table to change a constraint or a column's
nullability, and cannot drop this one while deliveries refer to it with foreign keys on. So
`updated_at` stays nullable (filled here, always set since), and the URL stays unique: a
deleted subscription keeps its row under a tombstone URL.

The subscription GRIDWATCH_WEBHOOK_URL made is marked `managed_by` at the next start.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("previous_secret", sa.String(length=200), nullable=True))
        batch.add_column(
            sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("managed_by", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE webhook_subscriptions SET updated_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("updated_at")
        batch.drop_column("version")
        batch.drop_column("managed_by")
        batch.drop_column("description")
        batch.drop_column("previous_secret_expires_at")
        batch.drop_column("previous_secret")
