"""The outbox relay: fans case events out to subscriptions and delivers them as signed webhooks."""

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import and_, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.cases.models import OutboxEvent
from gridwatch.dispatch.backoff import parse_retry_after, retry_delay
from gridwatch.dispatch.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from gridwatch.dispatch.signing import signed_headers
from gridwatch.dispatch.subscriptions import signing_secrets, subscription_matches
from gridwatch.gateway.metrics import Metrics

log = logging.getLogger("gridwatch.dispatch")

FAN_OUT_BATCH = 500
DELIVERY_BATCH = 100
MAX_PARALLEL_DELIVERIES = 16
_RETRY_AFTER_STATUSES = frozenset({429, 503})


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Attempt:
    delivery_id: int
    event_id: str
    case_id: str
    attempts: int
    url: str
    secrets: list[str]
    body: bytes


class WebhookRelay:
    """Delivers every outbox event to every matching subscription, in order per case."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        metrics: Metrics,
        max_attempts: int,
        poll_interval_s: float = 1.0,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._http = http
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._poll_interval_s = poll_interval_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Wake the relay now: a transaction wrote outbox events."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled; a database outage pauses delivery, it never ends it."""
        while True:
            try:
                await self.run_once()
            except DBAPIError as err:
                log.warning("webhook relay paused: database error: %s", err.orig or err)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)

    async def run_once(self) -> int:
        """Fan out new events, then attempt every delivery that is due; returns attempts made."""
        await self._fan_out()
        attempts = await self._due_attempts()
        if not attempts:
            return 0
        limiter = asyncio.Semaphore(MAX_PARALLEL_DELIVERIES)
        async with asyncio.TaskGroup() as group:
            for attempt in attempts:
                group.create_task(
                    self._deliver(attempt, limiter), name=f"deliver-{attempt.delivery_id}"
                )
        return len(attempts)

    async def _fan_out(self) -> None:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            events = (
                await session.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.fanned_out_at.is_(None))
                    .order_by(OutboxEvent.created_at, OutboxEvent.sequence)
                    .limit(FAN_OUT_BATCH)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not events:
                return
            subscriptions = (await session.scalars(select(WebhookSubscription))).all()
            for event in events:
                for subscription in subscriptions:
                    if not subscription_matches(subscription, event):
                        continue
                    session.add(
                        WebhookDelivery(
                            event_id=event.id,
                            subscription_id=subscription.id,
                            case_id=event.case_id,
                            sequence=event.sequence,
                            status=DeliveryStatus.PENDING.value,
                            attempts=0,
                            next_attempt_at=now,
                        )
                    )
                event.fanned_out_at = now

    async def _due_attempts(self) -> list[_Attempt]:
        # In order per case: only the lowest pending sequence of each (subscription, case)
        # may go out, so a retrying event holds back the later events of its case only.
        head = (
            select(
                WebhookDelivery.subscription_id,
                WebhookDelivery.case_id,
                func.min(WebhookDelivery.sequence).label("sequence"),
            )
            .where(WebhookDelivery.status == DeliveryStatus.PENDING.value)
            .group_by(WebhookDelivery.subscription_id, WebhookDelivery.case_id)
            .subquery()
        )
        statement = (
            select(WebhookDelivery, WebhookSubscription, OutboxEvent)
            .join(
                head,
                and_(
                    WebhookDelivery.subscription_id == head.c.subscription_id,
                    WebhookDelivery.case_id == head.c.case_id,
                    WebhookDelivery.sequence == head.c.sequence,
                ),
            )
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.next_attempt_at <= self._clock(),
                WebhookSubscription.enabled.is_(True),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(DELIVERY_BATCH)
        )
        async with self._sessions() as session:
            rows = (await session.execute(statement)).all()
        return [
            _Attempt(
                delivery_id=delivery.id,
                event_id=event.id,
                case_id=delivery.case_id,
                attempts=delivery.attempts,
                url=subscription.url,
                secrets=signing_secrets(subscription, self._clock()),
                body=json.dumps(event.body, separators=(",", ":"), ensure_ascii=False).encode(),
            )
            for delivery, subscription, event in rows
        ]

    async def _deliver(self, attempt: _Attempt, limiter: asyncio.Semaphore) -> None:
        async with limiter:
            sent_at = self._clock()
            headers = signed_headers(
                secrets=attempt.secrets, event_id=attempt.event_id, body=attempt.body, at=sent_at
            )
            try:
                response = await self._http.post(attempt.url, content=attempt.body, headers=headers)
            except httpx.HTTPError as err:
                await self._failed(attempt, status_code=None, error=f"{type(err).__name__}: {err}")
                return
        if response.is_success:
            await self._succeeded(attempt, response.status_code)
        elif response.status_code == 410:
            await self._gone(attempt)
        else:
            retry_after = None
            if response.status_code in _RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(response.headers.get("retry-after"), now=sent_at)
            await self._failed(
                attempt,
                status_code=response.status_code,
                error=f"HTTP {response.status_code}",
                retry_after=retry_after,
            )

    async def _succeeded(self, attempt: _Attempt, status_code: int) -> None:
        async with self._sessions() as session, session.begin():
            delivery = await session.get_one(WebhookDelivery, attempt.delivery_id)
            delivery.status = DeliveryStatus.DELIVERED.value
            delivery.attempts = attempt.attempts + 1
            delivery.last_status_code = status_code
            delivery.delivered_at = self._clock()
        self._metrics.deliveries.labels("delivered").inc()
        log.info(
            "webhook delivered event=%s case=%s url=%s",
            attempt.event_id,
            attempt.case_id,
            attempt.url,
        )

    async def _gone(self, attempt: _Attempt) -> None:
        async with self._sessions() as session, session.begin():
            delivery = await session.get_one(WebhookDelivery, attempt.delivery_id)
            delivery.status = DeliveryStatus.DEAD.value
            delivery.attempts = attempt.attempts + 1
            delivery.last_status_code = 410
            delivery.last_error = "410 Gone: subscription disabled"
            subscription = await session.get_one(WebhookSubscription, delivery.subscription_id)
            subscription.enabled = False
            subscription.disabled_reason = f"410 Gone at {self._clock().isoformat()}"
        self._metrics.deliveries.labels("gone").inc()
        log.warning("webhook receiver answered 410, subscription disabled url=%s", attempt.url)

    async def _failed(
        self,
        attempt: _Attempt,
        *,
        status_code: int | None,
        error: str,
        retry_after: float | None = None,
    ) -> None:
        attempts = attempt.attempts + 1
        dead = attempts >= self._max_attempts
        async with self._sessions() as session, session.begin():
            delivery = await session.get_one(WebhookDelivery, attempt.delivery_id)
            delivery.attempts = attempts
            delivery.last_status_code = status_code
            delivery.last_error = error[:2000]
            if dead:
                delivery.status = DeliveryStatus.DEAD.value
            else:
                delay = retry_delay(attempts, rng=self._rng, retry_after=retry_after)
                delivery.next_attempt_at = self._clock() + timedelta(seconds=delay)
        self._metrics.deliveries.labels("dead" if dead else "retry").inc()
        log.warning(
            "webhook attempt %d failed event=%s case=%s url=%s: %s%s",
            attempts, attempt.event_id, attempt.case_id, attempt.url, error,
            " (dead letter)" if dead else "",
        )  # fmt: skip
