"""The outbox relay against a real HTTP receiver that verifies Standard Webhooks signatures."""

import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from gridwatch.cases.service import apply_alarm
from gridwatch.dispatch.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from gridwatch.dispatch.relay import WebhookRelay
from gridwatch.dispatch.subscriptions import ensure_subscription
from gridwatch.domain import AlarmTransition, Severity
from gridwatch.gateway.metrics import Metrics
from tests.integration.factories import alarm, rain_sensor


class Clock:
    """A settable clock, so retry backoff can be skipped without sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def relay(sessions, webhook_receiver, webhook_secret, clock):
    async with sessions() as session, session.begin():
        await ensure_subscription(session=session, url=webhook_receiver.url, secret=webhook_secret)
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield WebhookRelay(
            sessions=sessions,
            http=http,
            metrics=Metrics(),
            max_attempts=3,
            rng=random.Random(1),
            clock=clock,
        )


async def _raise_alarms(sessions, *events):
    for event in events:
        async with sessions() as session, session.begin():
            await apply_alarm(session=session, alarm=event, sensor=rain_sensor(event.sensor_id))


async def _deliveries(sessions):
    async with sessions() as session:
        rows = await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
        return [(d.case_id, d.sequence, d.status, d.attempts) for d in rows]


async def test_each_event_is_delivered_once_signed_and_in_order(sessions, relay, webhook_receiver):
    await _raise_alarms(
        sessions,
        alarm(AlarmTransition.RAISED, Severity.BLUE),
        alarm(AlarmTransition.ESCALATED, Severity.RED, seconds=5),
        alarm(AlarmTransition.RAISED, sensor_id="RG-2"),
    )
    attempted = 0
    for _ in range(5):
        attempted += await relay.run_once()
    received = webhook_receiver.received
    assert attempted == 3
    assert len(received) == 3
    assert all(d.verified for d in received)
    assert len({d.event_id for d in received}) == 3
    assert all(d.headers["content-type"] == "application/cloudevents+json" for d in received)
    by_case: dict[str, list[int]] = {}
    for delivery in received:
        assert delivery.json["id"] == delivery.event_id
        by_case.setdefault(delivery.json["subject"], []).append(delivery.json["data"]["sequence"])
    assert sorted(by_case.values()) == [[1], [1, 2]]
    assert {status for *_, status, _ in await _deliveries(sessions)} == {"delivered"}


async def test_retry_after_is_honoured_and_later_events_wait(
    sessions, relay, webhook_receiver, clock
):
    webhook_receiver.respond_with(503, retry_after=120)
    await _raise_alarms(
        sessions,
        alarm(AlarmTransition.RAISED),
        alarm(AlarmTransition.ESCALATED, Severity.RED, seconds=5),
    )
    assert await relay.run_once() == 1
    assert webhook_receiver.received == []
    # The second event of the case must not overtake the first while it waits.
    clock.advance(119)
    assert await relay.run_once() == 0
    clock.advance(2)
    assert await relay.run_once() == 1
    assert await relay.run_once() == 1
    sequences = [d.json["data"]["sequence"] for d in webhook_receiver.received]
    assert sequences == [1, 2]
    assert [a.status for a in webhook_receiver.attempts] == [503, 200, 200]
    assert await _deliveries(sessions) == [
        (sequences and webhook_receiver.received[0].json["subject"], 1, "delivered", 2),
        (webhook_receiver.received[0].json["subject"], 2, "delivered", 1),
    ]


async def test_failures_back_off_then_become_dead_letters(sessions, relay, webhook_receiver, clock):
    webhook_receiver.set_default_status(500)
    await _raise_alarms(sessions, alarm(AlarmTransition.RAISED))
    # Backoff before attempts 2 and 3 is at most 1 s and 2 s; the clock stays within the
    # receiver's five-minute signature tolerance.
    for _ in range(3):
        await relay.run_once()
        clock.advance(10)
    assert [a.status for a in webhook_receiver.attempts] == [500, 500, 500]
    ((_, _, status, attempts),) = await _deliveries(sessions)
    assert (status, attempts) == (DeliveryStatus.DEAD, 3)
    clock.advance(10)
    assert await relay.run_once() == 0


async def test_gone_disables_the_subscription(sessions, relay, webhook_receiver, clock):
    webhook_receiver.set_default_status(410)
    await _raise_alarms(sessions, alarm(AlarmTransition.RAISED))
    await relay.run_once()
    await _raise_alarms(sessions, alarm(AlarmTransition.RAISED, sensor_id="RG-2"))
    clock.advance(10)
    assert await relay.run_once() == 0
    assert len(webhook_receiver.attempts) == 1
    async with sessions() as session:
        subscription = await session.scalar(select(WebhookSubscription))
    assert subscription is not None
    assert subscription.enabled is False
    assert "410" in (subscription.disabled_reason or "")


async def test_an_unreachable_receiver_is_retried(sessions, clock):
    async with sessions() as session, session.begin():
        # Port 9 (discard) on loopback: nothing listens there, so the connection is refused.
        await ensure_subscription(
            session=session, url="http://127.0.0.1:9/hook", secret="whsec_MDEyMzQ1Njc4OWFiY2RlZg=="
        )
    await _raise_alarms(sessions, alarm(AlarmTransition.RAISED))
    async with httpx.AsyncClient(timeout=2.0) as http:
        relay = WebhookRelay(
            sessions=sessions, http=http, metrics=Metrics(), max_attempts=5, clock=clock
        )
        assert await relay.run_once() == 1
    ((_, _, status, attempts),) = await _deliveries(sessions)
    assert (status, attempts) == ("pending", 1)
