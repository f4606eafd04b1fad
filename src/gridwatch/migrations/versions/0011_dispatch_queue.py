"""The dispatch queue (outbox events numbered in commit order) and the dispatch system's receipts.

Every outbox insert enqueues its event, unnumbered, through a trigger: all writers (the case
sink, transitions, supervision, the CLI, another gridwatch version) are covered, and nothing
updates or locks the outbox rows, which the relay locks while it fans them out. The sequencer
(`dispatch.queue.sequence_pending`) numbers them after commit under `dispatch_sequencer`'s
lock. Events already in the outbox are enqueued here, oldest first.

SQLite drops a table's triggers when batch mode rebuilds it: a later migration that alters
`outbox_events` in batch mode on SQLite must create `outbox_events_enqueue` again.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_SQLITE_TRIGGER = """
CREATE TRIGGER outbox_events_enqueue AFTER INSERT ON outbox_events
BEGIN
    INSERT INTO dispatch_queue (event_id) VALUES (NEW.id);
END
"""
_POSTGRESQL_FUNCTION = """
CREATE FUNCTION dispatch_queue_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dispatch_queue (event_id) VALUES (NEW.id);
    RETURN NULL;
END
$$
"""
_POSTGRESQL_TRIGGER = """
CREATE TRIGGER outbox_events_enqueue AFTER INSERT ON outbox_events
FOR EACH ROW EXECUTE FUNCTION dispatch_queue_enqueue()
"""


def upgrade() -> None:
    op.create_table(
        "dispatch_queue",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["outbox_events.id"],
            name=op.f("fk_dispatch_queue_event_id_outbox_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_queue")),
        sa.UniqueConstraint("event_id", name=op.f("uq_dispatch_queue_event_id")),
        sa.UniqueConstraint("position", name=op.f("uq_dispatch_queue_position")),
    )
    sequencer = op.create_table(
        "dispatch_sequencer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_dispatch_sequencer_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_sequencer")),
    )
    op.bulk_insert(sequencer, [{"id": 1, "last_position": 0}])
    op.execute(
        "INSERT INTO dispatch_queue (event_id) SELECT id FROM outbox_events"
        " ORDER BY created_at, case_id, sequence"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRESQL_FUNCTION)
        op.execute(_POSTGRESQL_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)

    op.create_table(
        "case_receipts",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("receipt_id", sa.String(length=128), nullable=False),
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_receipts_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("source", "receipt_id", name=op.f("pk_case_receipts")),
    )
    op.create_index(op.f("ix_case_receipts_case_id"), "case_receipts", ["case_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_case_receipts_case_id"), table_name="case_receipts")
    op.drop_table("case_receipts")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_events_enqueue ON outbox_events")
        op.execute("DROP FUNCTION IF EXISTS dispatch_queue_enqueue()")
    else:
        op.execute("DROP TRIGGER IF EXISTS outbox_events_enqueue")
    op.drop_table("dispatch_sequencer")
    op.drop_table("dispatch_queue")
