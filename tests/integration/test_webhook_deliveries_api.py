"""Deliveries and their attempts through the API, and dead letters replayed to a receiver."""

import random

import httpx
import pytest
from sqlalchemy import select

from gridwatch.api.roles import Role
from gridwatch.dispatch.models import WebhookDelivery
from gridwatch.dispatch.relay import WebhookRelay
from gridwatch.domain import AlarmTransition
from gridwatch.gateway.metrics import Metrics
from tests.integration.apiclient import running_api
from tests.integration.factories import alarm
from tests.integration.test_webhook_subscriptions_delivery import Clock, _raise, _relay_until_quiet

BASE = "/api/v1/webhooks"


@pytest.fixture
async def api(sessions):
    async with running_api(sessions) as api:
        yield api


async def _subscribed(api, receiver) -> str:
    created = await api.client.post(
        BASE,
        json={"url": receiver.url, "secret": receiver.secret},
        headers=api.as_role(Role.ADMIN),
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _relay(sessions, http, clock) -> WebhookRelay:
    return WebhookRelay(
        sessions=sessions,
        http=http,
        metrics=Metrics(),
        max_attempts=2,
        rng=random.Random(3),
        clock=clock,
    )


async def test_dead_letters_are_listed_with_their_attempts_and_replayed(
    api, sessions, webhook_receiver
):
    subscription = await _subscribed(api, webhook_receiver)
    clock = Clock()
    webhook_receiver.respond_with(400, 400, body="no such unit")
    await _raise(sessions, alarm(AlarmTransition.RAISED))
    async with httpx.AsyncClient(timeout=5.0) as http:
        relay = await _relay(sessions, http, clock)
        for _ in range(3):
            await _relay_until_quiet(relay)
            clock.advance(30)
        # Refused twice: a dead letter. The next case's event goes through.
        await _raise(sessions, alarm(AlarmTransition.RAISED, sensor_id="RG-2"))
        await _relay_until_quiet(relay)
        viewer = api.as_role(Role.DISPATCHER)
        dead = await api.client.get(f"{BASE}/{subscription}/deliveries?status=dead", headers=viewer)
        delivered = await api.client.get(
            f"{BASE}/{subscription}/deliveries?status=delivered", headers=viewer
        )
        assert dead.status_code == 200, dead.text
        (letter,) = dead.json()["items"]
        assert (letter["status"], letter["rejections"], letter["attempts"]) == ("dead", 2, 2)
        assert [a["status_code"] for a in letter["recent_attempts"]] == [400, 400]
        assert letter["recent_attempts"][0]["outcome"] == "rejected"
        assert letter["recent_attempts"][0]["response"] == "no such unit"
        assert len(delivered.json()["items"]) == 1

        # A dispatcher may read, not replay; an admin replays by id.
        refused = await api.client.post(
            f"{BASE}/{subscription}/replay", json={"delivery_ids": [letter["id"]]}, headers=viewer
        )
        assert refused.status_code == 403
        replayed = await api.client.post(
            f"{BASE}/{subscription}/replay",
            json={"delivery_ids": [letter["id"]]},
            headers=api.as_role(Role.ADMIN),
        )
        assert replayed.json() == {"replayed": 1, "delivery_ids": [letter["id"]]}
        await _relay_until_quiet(relay)
    assert sorted(d.json["data"]["sensor_id"] for d in webhook_receiver.received) == [
        "RG-1", "RG-2",
    ]  # fmt: skip
    after = await api.client.get(f"{BASE}/{subscription}/deliveries?status=dead", headers=viewer)
    assert after.json()["items"] == []


async def test_a_replay_by_time_span_takes_only_dead_letters_of_that_span(
    api, sessions, webhook_receiver
):
    subscription = await _subscribed(api, webhook_receiver)
    clock = Clock()
    webhook_receiver.set_default_status(422)
    await _raise(sessions, alarm(AlarmTransition.RAISED))
    async with httpx.AsyncClient(timeout=5.0) as http:
        relay = await _relay(sessions, http, clock)
        for _ in range(3):
            await _relay_until_quiet(relay)
            clock.advance(30)
    admin = api.as_role(Role.ADMIN)
    # The factory's alarms are from 2026-07-20 08:00 UTC.
    empty = await api.client.post(
        f"{BASE}/{subscription}/replay",
        json={"from": "2026-07-21T00:00:00Z", "to": "2026-07-22T00:00:00Z"},
        headers=admin,
    )
    taken = await api.client.post(
        f"{BASE}/{subscription}/replay", json={"from": "2026-07-20T00:00:00Z"}, headers=admin
    )
    assert empty.json()["replayed"] == 0
    assert taken.json()["replayed"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, ""),
        ({"delivery_ids": [1], "from": "2026-07-20T00:00:00Z"}, ""),
        ({"from": "2026-07-20T00:00:00"}, "from"),
        ({"from": "2026-07-21T00:00:00Z", "to": "2026-07-20T00:00:00Z"}, ""),
    ],
)
async def test_a_replay_request_that_says_nothing_clear_is_a_422(
    api, webhook_receiver, body, field
):
    subscription = await _subscribed(api, webhook_receiver)
    answer = await api.client.post(
        f"{BASE}/{subscription}/replay", json=body, headers=api.as_role(Role.ADMIN)
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert any(field in error["field"] for error in answer.json()["errors"])


async def test_an_unknown_subscription_is_a_404(api):
    answer = await api.client.get(f"{BASE}/sub_nothere/deliveries", headers=api.as_role(Role.ADMIN))
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


async def test_deleting_a_subscription_makes_what_it_had_pending_dead_letters(
    api, sessions, webhook_receiver
):
    subscription = await _subscribed(api, webhook_receiver)
    await _raise(sessions, alarm(AlarmTransition.RAISED))
    async with httpx.AsyncClient(timeout=5.0) as http:
        relay = await _relay(sessions, http, Clock())
        await relay._fan_out()  # queued, not sent
    admin = api.as_role(Role.ADMIN)
    gone = await api.client.delete(f"{BASE}/{subscription}", headers=admin | {"If-Match": "*"})
    assert gone.status_code == 204, gone.text
    async with sessions() as session:
        (status, error), *_ = (
            await session.execute(select(WebhookDelivery.status, WebhookDelivery.last_error))
        ).all()
    assert (status, error) == ("dead", "subscription deleted")
