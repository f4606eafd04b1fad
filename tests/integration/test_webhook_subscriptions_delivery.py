"""Subscriptions made through the API, delivered by the real relay to real receivers.

Receivers verify every request with the `standardwebhooks` library (tests/servers).
"""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from gridwatch.api.roles import Role
from gridwatch.cases.service import apply_alarm
from gridwatch.dispatch.relay import WebhookRelay
from gridwatch.domain import AlarmTransition, Severity
from gridwatch.gateway.metrics import Metrics
from tests.integration.apiclient import running_api
from tests.integration.factories import alarm, rain_sensor
from tests.servers.webhook_receiver import WebhookReceiver, new_secret

BASE = "/api/v1/webhooks"
OPENED, ESCALATED = "gridwatch.case.opened", "gridwatch.case.escalated"


class Clock:
    """The relay's clock: moved past an overlap without sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def api(sessions):
    async with running_api(sessions) as api:
        yield api


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def relay(sessions, clock):
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield WebhookRelay(
            sessions=sessions,
            http=http,
            metrics=Metrics(),
            max_attempts=5,
            rng=random.Random(1),
            clock=clock,
        )


async def _subscribe(api, url, **fields):
    response = await api.client.post(
        BASE, json={"url": url} | fields, headers=api.as_role(Role.ADMIN)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _raise(sessions, *events):
    for event in events:
        async with sessions() as session, session.begin():
            await apply_alarm(session=session, alarm=event, sensor=rain_sensor(event.sensor_id))


async def _relay_until_quiet(relay):
    for _ in range(10):
        if await relay.run_once() == 0:
            return
    raise AssertionError("the relay kept finding deliveries")


async def test_a_subscription_made_through_the_api_receives_signed_events(api, sessions, relay):
    # The receiver is set up with the secret the API generated and showed once.
    created = await api.client.post(
        BASE, json={"url": "http://127.0.0.1:9/unused"}, headers=api.as_role(Role.ADMIN)
    )
    secret = created.json()["secret"]
    with WebhookReceiver(secret=secret) as receiver:
        await api.client.patch(
            f"{BASE}/{created.json()['id']}",
            json={"url": receiver.url},
            headers=api.as_role(Role.ADMIN) | {"If-Match": '"1"'},
        )
        await _raise(sessions, alarm(AlarmTransition.RAISED))
        await _relay_until_quiet(relay)
        (delivery,) = receiver.received
    assert delivery.verified
    assert delivery.json["type"] == OPENED
    assert len(delivery.headers["webhook-signature"].split()) == 1


async def test_during_the_overlap_both_secrets_verify_after_it_only_the_new(
    api, sessions, relay, clock
):
    old = new_secret()
    with WebhookReceiver(secret=old) as holds_old:
        subscription = await _subscribe(api, holds_old.url, secret=old)
        rotated = await api.client.post(
            f"{BASE}/{subscription['id']}/rotate-secret",
            json={"overlap_s": 60},
            headers=api.as_role(Role.ADMIN) | {"If-Match": '"1"'},
        )
        new = rotated.json()["secret"]
        with WebhookReceiver(secret=new) as holds_new:
            await _raise(sessions, alarm(AlarmTransition.RAISED))
            await _relay_until_quiet(relay)
            (during,) = holds_old.received
            # The same request, as sent, reaches a receiver holding only the new secret.
            await _forward(during, holds_new)
            assert len(holds_new.received) == 1
            assert len(during.headers["webhook-signature"].split()) == 2

            clock.advance(120)  # past the overlap, within the signatures' 5-minute tolerance
            await _raise(sessions, alarm(AlarmTransition.RAISED, sensor_id="RG-2"))
            await relay.run_once()
            (after,) = holds_old.rejected
            assert "signature" in (after.error or "")
            assert len(after.headers["webhook-signature"].split()) == 1
            await _forward(after, holds_new)
            assert len(holds_new.received) == 2
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, dict(after.headers))


async def _forward(delivery, receiver):
    headers = {k: v for k, v in delivery.headers.items() if k.startswith("webhook-")}
    async with httpx.AsyncClient() as http:
        response = await http.post(receiver.url, content=delivery.body, headers=headers)
    assert response.status_code == 200


async def test_events_outside_a_filter_are_not_delivered(
    api, sessions, relay, webhook_receiver, webhook_secret
):
    # One receiver, one path per subscription; the case is event:0401 in unit grid
    # 110101001001001, opened blue, then escalated to red.
    filters: dict[str, dict[str, Any]] = {
        "all": {},
        "category-prefix": {"filter": {"category": "event:04*"}},
        "category-other": {"filter": {"category": "event:0402"}},
        "district": {"filter": {"grid": "110101"}},
        "legacy-unit": {"filter": {"grid": "11010100100101"}},
        "other-district": {"filter": {"grid": "110102"}},
        "orange-up": {"filter": {"min_severity": "orange"}},
        "opened-only": {"types": [OPENED]},
        "escalated-in-110101": {"types": [ESCALATED], "filter": {"grid": "110101"}},
        "disabled": {"enabled": False},
    }
    base = webhook_receiver.url.removesuffix("/webhook")
    for name, fields in filters.items():
        await _subscribe(api, f"{base}/{name}", secret=webhook_secret, **fields)
    await _raise(
        sessions,
        alarm(AlarmTransition.RAISED, Severity.BLUE),
        alarm(AlarmTransition.ESCALATED, Severity.RED, seconds=5),
    )
    await _relay_until_quiet(relay)
    got: dict[str, list[str]] = {name: [] for name in filters}
    for delivery in webhook_receiver.received:
        got[delivery.path.removeprefix("/")].append(delivery.json["type"])
    assert got == {
        "all": [OPENED, ESCALATED],
        "category-prefix": [OPENED, ESCALATED],
        "category-other": [],
        "district": [OPENED, ESCALATED],
        "legacy-unit": [OPENED, ESCALATED],
        "other-district": [],
        "orange-up": [ESCALATED],
        "opened-only": [OPENED],
        "escalated-in-110101": [ESCALATED],
        "disabled": [],
    }
    assert webhook_receiver.rejected == []


async def test_a_deleted_subscription_gets_nothing_more(
    api, sessions, relay, webhook_receiver, webhook_secret
):
    subscription = await _subscribe(api, webhook_receiver.url, secret=webhook_secret)
    await _raise(sessions, alarm(AlarmTransition.RAISED))
    await _relay_until_quiet(relay)
    deleted = await api.client.delete(
        f"{BASE}/{subscription['id']}", headers=api.as_role(Role.ADMIN) | {"If-Match": '"1"'}
    )
    assert deleted.status_code == 204
    await _raise(sessions, alarm(AlarmTransition.RAISED, sensor_id="RG-2"))
    await _relay_until_quiet(relay)
    assert len(webhook_receiver.attempts) == 1
