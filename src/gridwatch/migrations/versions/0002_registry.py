"""Sensor registry, grid units, MQTT device credentials and API keys with roles.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("key_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_digest", name=op.f("uq_api_keys_key_digest")),
    )
    op.create_table(
        "grid_units",
        sa.Column("code", sa.String(length=15), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("parent", sa.String(length=15), nullable=True),
        sa.Column("geometry", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_grid_units")),
    )
    op.create_index(op.f("ix_grid_units_parent"), "grid_units", ["parent"], unique=False)
    op.create_table(
        "sensors",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("grid", sa.String(length=15), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("protocol", sa.JSON(), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("calibration", sa.JSON(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sensors")),
    )
    op.create_index(op.f("ix_sensors_grid"), "sensors", ["grid"], unique=False)
    op.create_index(op.f("ix_sensors_kind"), "sensors", ["kind"], unique=False)
    op.create_index(op.f("ix_sensors_status"), "sensors", ["status"], unique=False)
    op.create_index(op.f("ix_sensors_updated_at"), "sensors", ["updated_at"], unique=False)
    op.create_table(
        "mqtt_credentials",
        sa.Column("sensor_id", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sensor_id"],
            ["sensors.id"],
            name=op.f("fk_mqtt_credentials_sensor_id_sensors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sensor_id", name=op.f("pk_mqtt_credentials")),
    )


def downgrade() -> None:
    op.drop_table("mqtt_credentials")
    op.drop_index(op.f("ix_sensors_updated_at"), table_name="sensors")
    op.drop_index(op.f("ix_sensors_status"), table_name="sensors")
    op.drop_index(op.f("ix_sensors_kind"), table_name="sensors")
    op.drop_index(op.f("ix_sensors_grid"), table_name="sensors")
    op.drop_table("sensors")
    op.drop_index(op.f("ix_grid_units_parent"), table_name="grid_units")
    op.drop_table("grid_units")
    op.drop_table("api_keys")
