"""The outbox relay: fans case events out to subscriptions and delivers them as signed webhooks.

Several relays (one per gridwatch process) may share one database. Each pass:

1. fan out: new outbox events become one delivery per matching subscription (the events are
   locked in order, so two relays never fan out one event twice, nor a case's events out of
   order);
2. claim: the head delivery of each (subscription, case) that is due gets this relay's lease,
   in one statement that only takes deliveries no live lease holds. Only a case's lowest
   pending sequence is a head, so events of a case go out in order whichever relay sends them;
3. send, in parallel, and record every attempt and its outcome in one transaction.

A relay that dies mid-delivery leaves leases that run out after `LEASE_S`; then any relay sends
those deliveries again (same `webhook-id`: receivers deduplicate). Delivery is at least once.

A receiver that is away (connection refused, timeout, 429, 502-504) is probed, not hammered:
while it is away only one delivery goes to it every few seconds (or after its Retry-After),
and none of those attempts counts towards a dead letter; the first success sends everything
pending at once. Only answers that refuse an event (other 4xx, 500) count, with backoff, until
`max_attempts` makes it a dead letter. 410 disables the subscription.
"""

import asyncio
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, cast

import httpx
from sqlalchemy import (
    ColumnElement,
    Table,
    Update,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from gridwatch.cases.models import OutboxEvent
from gridwatch.dispatch.backoff import parse_retry_after, retry_delay
from gridwatch.dispatch.models import (
    AttemptOutcome,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from gridwatch.dispatch.signing import signed_headers
from gridwatch.dispatch.subscriptions import signing_secrets, subscription_matches
from gridwatch.domain.backoff import Backoff
from gridwatch.gateway.metrics import Metrics

log = logging.getLogger("gridwatch.dispatch")

FAN_OUT_BATCH: Final = 500
DELIVERY_BATCH: Final = 100
MAX_PARALLEL_DELIVERIES: Final = 16
# Longer than an attempt can take (the HTTP client's timeout) plus recording it.
LEASE_S: Final = 30.0
# A receiver that is away is tried again at least this often, so it gets its backlog within
# about this long of coming back.
PROBE_MAX_S: Final = 4.0
PROBE_BASE_S: Final = 0.5
# A database outage: the relay waits this long at most between tries.
DATABASE_RETRY_MAX_S: Final = 15.0
RESPONSE_EXCERPT_BYTES: Final = 1024
_UNAVAILABLE_STATUSES: Final = frozenset({429, 502, 503, 504})
# How the database being away surfaces (a DBAPIError subclass, a refused connection, a pool
# with nothing to give): the relay pauses and resumes, it never ends.
DATABASE_DOWN: Final = (DBAPIError, OperationalError, InterfaceError, PoolTimeoutError, OSError)


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Attempt:
    delivery_id: int
    subscription_id: str
    event_id: str
    case_id: str
    rejections: int  # before this attempt
    url: str
    secrets: list[str]
    body: bytes


@dataclass(frozen=True, slots=True)
class _Result:
    attempt: _Attempt
    outcome: AttemptOutcome
    at: datetime
    latency_s: float
    status_code: int | None = None
    error: str | None = None
    response: str | None = None
    retry_after: float | None = None


@dataclass(slots=True)
class _AwayReceiver:
    """A subscription whose receiver is away: when to probe it next."""

    probe_at: datetime
    backoff: Backoff
    since: datetime = field(default_factory=utcnow)


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
        worker_id: str | None = None,
        lease_s: float = LEASE_S,
    ) -> None:
        self._sessions = sessions
        self._http = http
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._poll_interval_s = poll_interval_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self._wake = asyncio.Event()
        self._away: dict[str, _AwayReceiver] = {}
        self.worker_id = worker_id or f"relay-{secrets.token_hex(6)}"
        self._lease = timedelta(seconds=lease_s)

    def notify(self) -> None:
        """Wake the relay now: a transaction wrote outbox events."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled; a database outage pauses delivery, it never ends it."""
        outage = Backoff(base_s=self._poll_interval_s, max_s=DATABASE_RETRY_MAX_S, rng=self._rng)
        while True:
            self._wake.clear()
            try:
                attempted = await self.run_once()
            except DATABASE_DOWN as err:
                delay = outage.next_delay()
                log.warning(
                    "webhook relay paused: database unavailable (%s); retry %d in %.1fs",
                    getattr(err, "orig", None) or err, outage.failures, delay,
                )  # fmt: skip
                await self._sleep(delay)
                continue
            outage.reset()
            if attempted >= DELIVERY_BATCH:
                continue  # a backlog: the next batch at once
            await self._sleep(self._next_wait())

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _next_wait(self) -> float:
        # Sooner than the poll interval when an away receiver is due for its probe.
        now = self._clock()
        wait = self._poll_interval_s
        for away in self._away.values():
            wait = min(wait, max((away.probe_at - now).total_seconds(), 0.0))
        return wait

    async def run_once(self) -> int:
        """Fan out new events, then attempt every delivery that is due; returns attempts made."""
        await self._fan_out()
        attempts = await self._claim()
        if not attempts:
            return 0
        limiter = asyncio.Semaphore(MAX_PARALLEL_DELIVERIES)
        results = await asyncio.gather(*(self._send(attempt, limiter) for attempt in attempts))
        await self._record(results)
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
                    # Not SKIP LOCKED: a relay that skipped a case's event another relay holds
                    # could fan out the case's next one first, and that would go out first.
                    # Waiting serializes fan-out, which is cheap; the rows come back in order.
                    .with_for_update()
                )
            ).all()
            if not events:
                return
            # Disabled subscriptions keep receiving deliveries (held until re-enabled);
            # deleted ones do not.
            subscriptions = (
                await session.scalars(
                    select(WebhookSubscription).where(WebhookSubscription.deleted_at.is_(None))
                )
            ).all()
            rows = [
                {
                    "event_id": event.id,
                    "subscription_id": subscription.id,
                    "case_id": event.case_id,
                    "sequence": event.sequence,
                    "status": DeliveryStatus.PENDING.value,
                    "attempts": 0,
                    "rejections": 0,
                    "next_attempt_at": now,
                }
                for event in events
                for subscription in subscriptions
                if subscription_matches(subscription, event)
            ]
            if rows:
                await session.execute(insert(WebhookDelivery), rows)
            for event in events:
                event.fanned_out_at = now

    async def _claim(self) -> list[_Attempt]:
        """Lease the due head deliveries: at most one per away receiver, none to one not due."""
        now = self._clock()
        waiting = [sid for sid, away in self._away.items() if away.probe_at > now]
        probing = {sid for sid, away in self._away.items() if away.probe_at <= now}
        # In order per case: only the lowest pending sequence of each (subscription, case)
        # may go out, so a retrying event holds back the later events of its case only; a
        # head leased by another relay holds them back too, until it is recorded.
        # A correlated test of each candidate, not a join to a GROUP BY over every pending
        # delivery: with statistics from quiet times ("hardly anything pending") PostgreSQL
        # planned that join as a nested loop taking seconds once a backlog built up.
        earlier = aliased(WebhookDelivery)
        head = (
            select(func.min(earlier.sequence))
            .where(
                earlier.subscription_id == WebhookDelivery.subscription_id,
                earlier.case_id == WebhookDelivery.case_id,
                earlier.status == DeliveryStatus.PENDING.value,
            )
            .scalar_subquery()
        )
        candidates = (
            select(WebhookDelivery.id, WebhookDelivery.subscription_id)
            .where(WebhookDelivery.sequence == head)
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.next_attempt_at <= now,
                _lease_free(now),
                WebhookSubscription.enabled.is_(True),
                WebhookDelivery.subscription_id.not_in(waiting),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(DELIVERY_BATCH)
            # PostgreSQL: another relay claiming now skips these rows instead of waiting.
            .with_for_update(of=WebhookDelivery, skip_locked=True)
        )
        async with self._sessions() as session, session.begin():
            found = (await session.execute(candidates)).all()
            chosen: list[int] = []
            probed: set[str] = set()
            for delivery_id, subscription_id in found:
                if subscription_id in probing:
                    if subscription_id in probed:
                        continue  # one probe per away receiver
                    probed.add(subscription_id)
                chosen.append(delivery_id)
            if not chosen:
                return []
            # The lease condition again: on SQLite (no row locks) this is what keeps two
            # relays from taking one delivery.
            claimed = await session.scalars(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id.in_(chosen),
                    # Another relay may have sent and recorded it since the SELECT.
                    WebhookDelivery.status == DeliveryStatus.PENDING.value,
                    _lease_free(now),
                )
                .values(lease_until=now + self._lease, claimed_by=self.worker_id)
                .returning(WebhookDelivery.id)
            )
            claimed_ids = list(claimed)
            rows = (
                await session.execute(
                    select(WebhookDelivery, WebhookSubscription, OutboxEvent)
                    .join(
                        WebhookSubscription,
                        WebhookSubscription.id == WebhookDelivery.subscription_id,
                    )
                    .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
                    .where(WebhookDelivery.id.in_(claimed_ids))
                    .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                )
            ).all()
            return [
                _Attempt(
                    delivery_id=delivery.id,
                    subscription_id=subscription.id,
                    event_id=event.id,
                    case_id=delivery.case_id,
                    rejections=delivery.rejections,
                    url=subscription.url,
                    secrets=signing_secrets(subscription, now),
                    body=json.dumps(event.body, separators=(",", ":"), ensure_ascii=False).encode(),
                )
                for delivery, subscription, event in rows
            ]

    async def _send(self, attempt: _Attempt, limiter: asyncio.Semaphore) -> _Result:
        async with limiter:
            sent_at = self._clock()
            headers = signed_headers(
                secrets=attempt.secrets, event_id=attempt.event_id, body=attempt.body, at=sent_at
            )
            started = time.perf_counter()
            try:
                response = await self._http.post(attempt.url, content=attempt.body, headers=headers)
            except httpx.HTTPError as err:
                return _Result(
                    attempt,
                    AttemptOutcome.UNAVAILABLE,
                    at=sent_at,
                    latency_s=time.perf_counter() - started,
                    error=f"{type(err).__name__}: {err}"[:2000],
                )
        latency = time.perf_counter() - started
        code = response.status_code
        excerpt = response.content[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace")
        if response.is_success:
            outcome = AttemptOutcome.DELIVERED
        elif code == 410:
            outcome = AttemptOutcome.GONE
        elif code in _UNAVAILABLE_STATUSES:
            outcome = AttemptOutcome.UNAVAILABLE
        else:
            outcome = AttemptOutcome.REJECTED
        retry_after = None
        if code in _UNAVAILABLE_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now=sent_at)
        return _Result(
            attempt,
            outcome,
            at=sent_at,
            latency_s=latency,
            status_code=code,
            error=None if outcome is AttemptOutcome.DELIVERED else f"HTTP {code}",
            response=excerpt,
            retry_after=retry_after,
        )

    async def _record(self, results: Sequence[_Result]) -> None:
        """Write every result and attempt in one transaction, then update the away receivers.

        Each update holds only while this relay's lease does: a relay that was too slow and
        lost the lease to another leaves the delivery to that one.
        """
        delivered = [r for r in results if r.outcome is AttemptOutcome.DELIVERED]
        async with self._sessions() as session, session.begin():
            if delivered:
                # The common case in one executemany, not a round trip per result.
                # On the table, not the ORM class: a list of parameters to an ORM UPDATE
                # means SQLAlchemy's bulk update by primary key, which cannot check the lease.
                table = cast(Table, WebhookDelivery.__table__)
                await session.execute(
                    update(table)
                    .where(
                        table.c.id == bindparam("delivery"),
                        table.c.claimed_by == self.worker_id,
                    )
                    .values(
                        status=DeliveryStatus.DELIVERED.value,
                        delivered_at=bindparam("at"),
                        attempts=table.c.attempts + 1,
                        last_status_code=bindparam("code"),
                        last_error=None,
                        lease_until=None,
                        claimed_by=None,
                    ),
                    [
                        {"delivery": r.attempt.delivery_id, "at": r.at, "code": r.status_code}
                        for r in delivered
                    ],
                )
            for result in results:
                if result.outcome is AttemptOutcome.DELIVERED:
                    continue
                await session.execute(self._delivery_update(result))
                if result.outcome is AttemptOutcome.GONE:
                    await session.execute(
                        update(WebhookSubscription)
                        .where(WebhookSubscription.id == result.attempt.subscription_id)
                        .values(
                            enabled=False,
                            disabled_reason=f"410 Gone at {result.at.isoformat()}",
                        )
                    )
            await session.execute(
                insert(WebhookAttempt),
                [
                    {
                        "delivery_id": result.attempt.delivery_id,
                        "subscription_id": result.attempt.subscription_id,
                        "event_id": result.attempt.event_id,
                        "attempted_at": result.at,
                        "outcome": result.outcome.value,
                        "status_code": result.status_code,
                        "latency_ms": round(result.latency_s * 1000, 3),
                        "error": result.error,
                        "response": result.response,
                    }
                    for result in results
                ],
            )
        for result in results:
            self._after(result)

    def _delivery_update(self, result: _Result) -> Update:
        attempt = result.attempt
        changes: dict[str, object] = {
            "attempts": WebhookDelivery.attempts + 1,
            "last_status_code": result.status_code,
            "last_error": result.error,
            "lease_until": None,
            "claimed_by": None,
        }
        match result.outcome:
            case AttemptOutcome.DELIVERED:
                raise ValueError("delivered results are recorded together (_record)")
            case AttemptOutcome.GONE:
                changes |= {"status": DeliveryStatus.DEAD.value}
            case AttemptOutcome.REJECTED:
                rejections = attempt.rejections + 1
                changes["rejections"] = rejections
                if self._is_dead(result):
                    changes["status"] = DeliveryStatus.DEAD.value
                else:
                    delay = retry_delay(rejections, rng=self._rng)
                    changes["next_attempt_at"] = result.at + timedelta(seconds=delay)
            case AttemptOutcome.UNAVAILABLE:
                pass  # the receiver is probed; this event keeps its place and its budget
        return (
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == attempt.delivery_id,
                WebhookDelivery.claimed_by == self.worker_id,
            )
            .values(changes)
        )

    def _is_dead(self, result: _Result) -> bool:
        return (
            result.outcome is AttemptOutcome.REJECTED
            and result.attempt.rejections + 1 >= self._max_attempts
        )

    def _after(self, result: _Result) -> None:
        attempt = result.attempt
        subscription = attempt.subscription_id
        outcome = result.outcome
        self._metrics.deliveries.labels("dead" if self._is_dead(result) else outcome.value).inc()
        if outcome is AttemptOutcome.UNAVAILABLE:
            away = self._away.get(subscription)
            if away is None:
                backoff = Backoff(base_s=PROBE_BASE_S, max_s=PROBE_MAX_S, rng=self._rng)
                away = self._away[subscription] = _AwayReceiver(result.at, backoff, result.at)
                log.warning(
                    "webhook receiver away url=%s: %s; probing it", attempt.url, result.error
                )
            delay = away.backoff.next_delay(retry_after=result.retry_after)
            away.probe_at = self._clock() + timedelta(seconds=delay)
            return
        if subscription in self._away:
            away = self._away.pop(subscription)
            log.info(
                "webhook receiver back url=%s after %.1fs away; sending its backlog",
                attempt.url, (result.at - away.since).total_seconds(),
            )  # fmt: skip
            self._wake.set()
        if outcome is AttemptOutcome.DELIVERED:
            # The case's next event is its head now: send it at once, not at the next poll
            # (a backlog deep in a few cases is drained one event per case per pass).
            self._wake.set()
            log.info(
                "webhook delivered event=%s case=%s url=%s",
                attempt.event_id, attempt.case_id, attempt.url,
            )  # fmt: skip
        elif outcome is AttemptOutcome.GONE:
            log.warning("webhook receiver answered 410, subscription disabled url=%s", attempt.url)
        else:
            log.warning(
                "webhook refused event=%s case=%s url=%s: %s%s",
                attempt.event_id, attempt.case_id, attempt.url, result.error,
                " (dead letter)" if self._is_dead(result) else "",
            )  # fmt: skip


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until <= now)
