"""Webhook subscription and delivery tables."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from gridwatch.gateway.db import Base, UTCDateTime


class DeliveryStatus(StrEnum):
    """A delivery is pending until a 2xx answer, or dead after its last attempt."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class WebhookSubscription(Base):
    """A receiver of case events: `types` empty means every type, `filter` empty every case."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # Unique. A deleted subscription keeps its row (its deliveries and attempts refer to it)
    # under a tombstone URL, `<url>#deleted:<id>`, so its URL can be subscribed again.
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    # Kept retrievable: HMAC signing needs the secret itself, not a hash of it.
    secret: Mapped[str] = mapped_column(String(200))
    # The secret in force before the last rotation; deliveries carry its signature too until
    # it expires, so a receiver can switch secrets at its own pace.
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    types: Mapped[list[str]] = mapped_column(JSON, default=list)
    filter: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    # "settings" for GRIDWATCH_WEBHOOK_URL's subscription: its URL and secret come from there.
    managed_by: Mapped[str | None] = mapped_column(String(32))
    # Bumped by every change made through the API; the ETag a write's If-Match must name.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Always set; nullable only because SQLite cannot add a NOT NULL column without a constant
    # default, nor rebuild this table while deliveries refer to it (migration 0010).
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One event for one subscription; unique, so an event is never queued twice for a receiver."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_head", "subscription_id", "case_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("outbox_events.id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id"))
    case_id: Mapped[str] = mapped_column(String(32))
    sequence: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A worker sends a delivery only while it holds the lease; a worker that dies mid-delivery
    # leaves a lease that runs out, and another worker (or the restarted one) sends it again.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    # Answers that refused this event (4xx, 500): they, not a receiver being away, count
    # towards the dead letter.
    rejections: Mapped[int] = mapped_column(Integer, default=0)


class AttemptOutcome(StrEnum):
    """How one delivery attempt ended."""

    DELIVERED = "delivered"
    # The receiver is away (refused, timed out, 429, 502-504): it is probed until it is back.
    UNAVAILABLE = "unavailable"
    # The receiver answered and refused this event: retried with backoff, then a dead letter.
    REJECTED = "rejected"
    GONE = "gone"


class WebhookAttempt(Base):
    """One attempt to deliver: when, the answer, how long it took, the start of the body."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_subscription", "subscription_id", "attempted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    subscription_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(12))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # The first KiB of the receiver's answer, as text.
    response: Mapped[str | None] = mapped_column(Text)
