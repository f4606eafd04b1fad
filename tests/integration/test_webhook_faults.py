"""The relay with its dependencies taken away for real: the receiver, the database, a worker.

Real time, a real receiver on loopback, real PostgreSQL (or SQLite) behind a proxy that cuts
connections. In every case each event arrives, once per `webhook-id` at an idempotent
receiver, in per-case order, and the relay task never ends.
"""

import asyncio
import contextlib
import time
from collections import defaultdict

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from gridwatch.cases.service import apply_alarm
from gridwatch.dispatch.models import WebhookAttempt
from gridwatch.dispatch.relay import WebhookRelay
from gridwatch.dispatch.subscriptions import ensure_subscription
from gridwatch.domain import AlarmTransition, Severity
from gridwatch.gateway.db import create_engine, session_factory
from gridwatch.gateway.metrics import Metrics
from tests.integration.factories import alarm, rain_sensor
from tests.servers.fault_proxy import FaultProxy
from tests.servers.webhook_receiver import Delivery, WebhookReceiver

CASES = 12


async def _subscribe(sessions, receiver) -> None:
    async with sessions() as session, session.begin():
        await ensure_subscription(session=session, url=receiver.url, secret=receiver.secret)


async def _raise_storm(sessions, *, cases: int = CASES, offset: int = 0) -> int:
    """Open `cases` cases and escalate each: two events a case; returns the events written."""
    for n in range(offset, offset + cases):
        sensor_id = f"RG-{n}"
        for event in (
            alarm(AlarmTransition.RAISED, Severity.BLUE, sensor_id=sensor_id),
            alarm(AlarmTransition.ESCALATED, Severity.RED, sensor_id=sensor_id, seconds=5),
        ):
            async with sessions() as session, session.begin():
                await apply_alarm(session=session, alarm=event, sensor=rain_sensor(sensor_id))
    return 2 * cases


def _relay(sessions, http, **options) -> WebhookRelay:
    return WebhookRelay(sessions=sessions, http=http, metrics=Metrics(), max_attempts=5, **options)


@contextlib.asynccontextmanager
async def _running(*relays: WebhookRelay):
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        yield tasks
    finally:
        for task in tasks:
            assert not task.done(), f"the relay task ended: {task}"
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _wait_distinct(receiver: WebhookReceiver, count: int, seconds: float) -> list[Delivery]:
    """Every delivery once `count` distinct events arrived (duplicates of an id may be among
    them: an answer the relay gave up waiting for is sent again)."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.05) + 1):
        received = receiver.received
        if len({d.event_id for d in received}) >= count or time.monotonic() > deadline:
            return received
        await asyncio.sleep(0.05)
    return receiver.received


def _assert_once_each_in_case_order(received, expected: int) -> None:
    ids = [d.event_id for d in received]
    assert len(set(ids)) == expected, f"{len(set(ids))} distinct of {expected}"
    by_case: dict[str, list[int]] = defaultdict(list)
    for delivery in {d.event_id: d for d in received}.values():
        by_case[delivery.json["subject"]].append(delivery.json["data"]["sequence"])
    # First arrival of each event id, in arrival order: per case 1, 2, ...
    first_seen: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for delivery in received:
        if delivery.event_id in seen:
            continue
        seen.add(delivery.event_id)
        first_seen[delivery.json["subject"]].append(delivery.json["data"]["sequence"])
    assert all(seqs == sorted(seqs) for seqs in first_seen.values()), first_seen


async def test_a_receiver_away_for_a_while_gets_everything_within_5_s_of_coming_back(
    sessions, webhook_receiver
):
    await _subscribe(sessions, webhook_receiver)
    port = webhook_receiver.port
    webhook_receiver.close()  # away: connections refused
    async with httpx.AsyncClient(timeout=2.0) as http:
        relay = _relay(sessions, http, poll_interval_s=0.2)
        async with _running(relay):
            expected = await _raise_storm(sessions)
            await asyncio.sleep(6)  # several probes fail meanwhile
            webhook_receiver.start(port)
            back = time.monotonic()
            received = await webhook_receiver.wait_for_async(expected, timeout=5.0)
            recovered_in = time.monotonic() - back
    assert recovered_in < 5.0
    _assert_once_each_in_case_order(received, expected)
    async with sessions() as session:
        outcomes = list(await session.scalars(select(WebhookAttempt.outcome)))
    # The first pass may try each case's head once; after that only probes go out (at most
    # one every few seconds, backing off), not every event again and again.
    assert 1 <= outcomes.count("unavailable") <= CASES + 6, outcomes


async def test_a_receiver_that_fails_and_times_out_then_recovers_gets_each_event_once(
    sessions, webhook_receiver
):
    await _subscribe(sessions, webhook_receiver)
    # Refusals, a 429 with Retry-After, then answers slower than the client waits.
    webhook_receiver.respond_with(500, 500, 502)
    webhook_receiver.respond_with(429, retry_after=1)
    webhook_receiver.respond_with(200, 200, delay=1.5)
    async with httpx.AsyncClient(timeout=1.0) as http:
        relay = _relay(sessions, http, poll_interval_s=0.2)
        async with _running(relay):
            expected = await _raise_storm(sessions, cases=4)
            received = await _wait_distinct(webhook_receiver, expected, 30.0)
    _assert_once_each_in_case_order(received, expected)


async def test_the_relay_outlives_a_database_outage_and_delivers_what_came_meanwhile(
    database_url, sessions, webhook_receiver
):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite is a file: there is no server to take away")
    await _subscribe(sessions, webhook_receiver)
    url = make_url(database_url)
    async with FaultProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        engine = create_engine(url.set(port=proxy.port).render_as_string(False))
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                relay = _relay(session_factory(engine), http, poll_interval_s=0.2)
                async with _running(relay):
                    first = await _raise_storm(sessions, cases=3)
                    await webhook_receiver.wait_for_async(first, timeout=10.0)
                    await proxy.cut()
                    # Events written while the relay cannot reach the database.
                    later = await _raise_storm(sessions, cases=3, offset=100)
                    await asyncio.sleep(3)  # the relay fails, backs off, and lives
                    await proxy.restore()
                    received = await _wait_distinct(webhook_receiver, first + later, 20.0)
        finally:
            await engine.dispose()
    _assert_once_each_in_case_order(received, first + later)


async def test_a_database_lost_mid_delivery_delivers_again_after_the_lease(
    database_url, sessions, webhook_receiver
):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite is a file: there is no server to take away")
    await _subscribe(sessions, webhook_receiver)
    url = make_url(database_url)
    # Each answer takes a second: the database goes away while the relay waits for them.
    webhook_receiver.respond_with(*[200] * 4, delay=1.0)
    async with FaultProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        engine = create_engine(url.set(port=proxy.port).render_as_string(False))
        try:
            async with httpx.AsyncClient(timeout=5.0) as http:
                relay = _relay(session_factory(engine), http, poll_interval_s=0.2, lease_s=3.0)
                async with _running(relay):
                    expected = await _raise_storm(sessions, cases=2)
                    await asyncio.sleep(0.5)  # claimed and sent, answers pending
                    await proxy.cut()
                    await asyncio.sleep(1.5)  # the results cannot be recorded
                    await proxy.restore()
                    # The leases run out, the events go again: the receiver sees duplicates
                    # of a webhook-id, never a gap.
                    await _wait_distinct(webhook_receiver, expected, 20.0)
        finally:
            await engine.dispose()
    _assert_once_each_in_case_order(webhook_receiver.received, expected)


async def test_two_relays_on_one_database_deliver_each_event_once_in_case_order(
    sessions, webhook_receiver
):
    await _subscribe(sessions, webhook_receiver)
    async with httpx.AsyncClient(timeout=5.0) as http:
        relays = [_relay(sessions, http, poll_interval_s=0.05) for _ in range(2)]
        async with _running(*relays):
            expected = await _raise_storm(sessions, cases=30)
            received = await webhook_receiver.wait_for_async(expected, timeout=30.0)
            await asyncio.sleep(0.5)  # a duplicate would arrive meanwhile
    received = webhook_receiver.received
    assert len(received) == expected, "an event was delivered twice"
    _assert_once_each_in_case_order(received, expected)
    async with sessions() as session:
        attempted = set(await session.scalars(select(WebhookAttempt.delivery_id)))
    assert len(attempted) == expected
