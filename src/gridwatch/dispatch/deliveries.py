"""A subscription's deliveries and their attempts, and replaying dead letters.

Services never commit: the caller owns the transaction.
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.cases.models import OutboxEvent
from gridwatch.dispatch.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from gridwatch.dispatch.subscriptions import get_subscription

_Listing = Select[WebhookDelivery, str, datetime]

# Attempts shown per delivery, newest first: a receiver away for a day was probed thousands
# of times, and the latest say what is happening now.
ATTEMPTS_SHOWN = 20


class DeliveryFilter(StrEnum):
    """Which deliveries to list."""

    PENDING = "pending"
    # Pending after at least one failed attempt: being retried, or waiting for the receiver.
    FAILED = "failed"
    DEAD = "dead"
    DELIVERED = "delivered"


class AttemptRead(BaseModel):
    """One attempt as the API shows it."""

    at: datetime
    outcome: str
    status_code: int | None
    latency_ms: float
    error: str | None
    response: str | None


class DeliveryRead(BaseModel):
    """One event for one subscription, with its latest attempts."""

    id: int
    event_id: str
    type: str
    case_id: str
    sequence: int
    status: str
    attempts: int
    rejections: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    recent_attempts: list[AttemptRead]


async def list_deliveries(
    *,
    session: AsyncSession,
    subscription_id: str,
    status: DeliveryFilter | None,
    limit: int,
    before: int | None = None,
) -> list[DeliveryRead]:
    """Newest first; `before` (a delivery id) pages on. SubscriptionNotFoundError if none."""
    await get_subscription(session=session, subscription_id=subscription_id)
    statement = _filtered(
        select(WebhookDelivery, OutboxEvent.type, OutboxEvent.created_at)
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.subscription_id == subscription_id),
        status,
    )
    if before is not None:
        statement = statement.where(WebhookDelivery.id < before)
    rows = (await session.execute(statement.order_by(WebhookDelivery.id.desc()).limit(limit))).all()
    attempts = await _recent_attempts(session, [delivery.id for delivery, *_ in rows])
    return [
        DeliveryRead(
            id=delivery.id,
            event_id=delivery.event_id,
            type=event_type,
            case_id=delivery.case_id,
            sequence=delivery.sequence,
            status=delivery.status,
            attempts=delivery.attempts,
            rejections=delivery.rejections,
            next_attempt_at=(
                delivery.next_attempt_at if delivery.status == DeliveryStatus.PENDING else None
            ),
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            delivered_at=delivery.delivered_at,
            created_at=created_at,
            recent_attempts=attempts.get(delivery.id, []),
        )
        for delivery, event_type, created_at in rows
    ]


async def replay(
    *,
    session: AsyncSession,
    subscription_id: str,
    delivery_ids: Sequence[int] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime,
) -> list[int]:
    """Send dead letters again: the given ones, or those whose event was written in the span.

    A replayed delivery is pending again with a fresh budget of refusals, due now. Only dead
    letters of this subscription are touched; returns their ids. SubscriptionNotFoundError.
    """
    await get_subscription(session=session, subscription_id=subscription_id)
    chosen = select(WebhookDelivery.id).where(
        WebhookDelivery.subscription_id == subscription_id,
        WebhookDelivery.status == DeliveryStatus.DEAD.value,
    )
    if delivery_ids is not None:
        chosen = chosen.where(WebhookDelivery.id.in_(delivery_ids))
    if since is not None or until is not None:
        events = select(OutboxEvent.id)
        if since is not None:
            events = events.where(OutboxEvent.created_at >= since)
        if until is not None:
            events = events.where(OutboxEvent.created_at < until)
        chosen = chosen.where(WebhookDelivery.event_id.in_(events))
    ids = list(await session.scalars(chosen.order_by(WebhookDelivery.id)))
    if ids:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == DeliveryStatus.DEAD)
            .values(
                status=DeliveryStatus.PENDING.value,
                rejections=0,
                next_attempt_at=now,
                lease_until=None,
                claimed_by=None,
            )
        )
    return ids


def _filtered(statement: _Listing, status: DeliveryFilter | None) -> _Listing:
    match status:
        case None:
            return statement
        case DeliveryFilter.FAILED:
            return statement.where(
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.attempts > 0,
            )
        case _:
            return statement.where(WebhookDelivery.status == status.value)


async def _recent_attempts(
    session: AsyncSession, delivery_ids: Sequence[int]
) -> dict[int, list[AttemptRead]]:
    if not delivery_ids:
        return {}
    ranked = (
        select(
            WebhookAttempt.id,
            func.row_number()
            .over(partition_by=WebhookAttempt.delivery_id, order_by=WebhookAttempt.id.desc())
            .label("rank"),
        )
        .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        .subquery()
    )
    rows = await session.scalars(
        select(WebhookAttempt)
        .join(ranked, ranked.c.id == WebhookAttempt.id)
        .where(ranked.c.rank <= ATTEMPTS_SHOWN)
        .order_by(WebhookAttempt.delivery_id, WebhookAttempt.id.desc())
    )
    found: dict[int, list[AttemptRead]] = defaultdict(list)
    for attempt in rows:
        found[attempt.delivery_id].append(
            AttemptRead(
                at=attempt.attempted_at,
                outcome=attempt.outcome,
                status_code=attempt.status_code,
                latency_ms=attempt.latency_ms,
                error=attempt.error,
                response=attempt.response,
            )
        )
    return found
