"""Which events a webhook subscription gets, which secrets sign them, what the API accepts."""

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gridwatch.cases.events import CaseEventType
from gridwatch.cases.models import OutboxEvent
from gridwatch.dispatch.models import WebhookSubscription
from gridwatch.dispatch.subscription_schemas import (
    SubscriptionFilter,
    generate_secret,
    secret_problem,
    url_problem,
)
from gridwatch.dispatch.subscriptions import signing_secrets, subscription_matches
from gridwatch.domain import Severity

NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
UNIT = "110101001001001"  # Dongcheng, street 001, community 001, unit grid 001
CASE = {"category": "event:0401", "grid": UNIT, "severity": "orange"}


def _subscription(
    *, types: list[str] | None = None, deleted: bool = False, **wanted: Any
) -> WebhookSubscription:
    return WebhookSubscription(
        id="sub_1",
        secret="whsec_new",
        types=types or [],
        filter=SubscriptionFilter.model_validate(wanted).stored(),
        deleted_at=NOW if deleted else None,
    )


def _event(event_type: str = CaseEventType.OPENED.value, **case: Any) -> OutboxEvent:
    return OutboxEvent(id="evt_1", type=event_type, body={"type": event_type, "data": CASE | case})


@pytest.mark.parametrize(
    ("wanted", "matches"),
    [
        ({}, True),
        ({"category": "event:0401"}, True),
        ({"category": "event:04*"}, True),
        ({"category": "event:*"}, True),
        ({"category": "*"}, True),
        ({"category": "event:0402"}, False),
        ({"category": "event:040"}, False),  # exact unless it ends in *
        ({"category": "event:05*"}, False),
        ({"category": "component:04*"}, False),
        ({"grid": "110101"}, True),  # district
        ({"grid": "110101001"}, True),  # street
        ({"grid": "110101001001"}, True),  # community
        ({"grid": UNIT}, True),  # the unit grid itself
        ({"grid": "11010100100101"}, True),  # its 14-digit legacy code
        ({"grid": "110102"}, False),
        ({"grid": "110101001002"}, False),
        ({"grid": "110101001001002"}, False),
        ({"min_severity": "blue"}, True),
        ({"min_severity": "orange"}, True),
        ({"min_severity": "red"}, False),
        ({"category": "event:04*", "grid": "110101", "min_severity": "yellow"}, True),
        ({"category": "event:04*", "grid": "110102", "min_severity": "yellow"}, False),
    ],
)
def test_the_filter_is_matched_against_the_case_snapshot(wanted, matches):
    assert subscription_matches(_subscription(**wanted), _event()) is matches


@pytest.mark.parametrize(
    ("types", "event_type", "matches"),
    [
        ([], CaseEventType.CLOSED.value, True),
        ([CaseEventType.OPENED.value], CaseEventType.OPENED.value, True),
        (["gridwatch.case.opened", "gridwatch.case.escalated"], "gridwatch.case.escalated", True),
        ([CaseEventType.OPENED.value], CaseEventType.ESCALATED.value, False),
    ],
)  # fmt: skip
def test_types_pick_the_events(types, event_type, matches):
    assert subscription_matches(_subscription(types=types), _event(event_type)) is matches


@pytest.mark.parametrize("minimum", list(Severity))
@pytest.mark.parametrize("severity", list(Severity))
def test_min_severity_follows_the_escalation_order(minimum, severity):
    subscription = _subscription(min_severity=minimum.value)
    assert subscription_matches(subscription, _event(severity=severity.value)) is (
        severity >= minimum
    )


@given(category=st.text(max_size=12), prefix=st.text(max_size=6))
def test_a_prefix_pattern_matches_exactly_the_categories_it_starts(category, prefix):
    subscription = WebhookSubscription(types=[], filter={"category": f"{prefix}*"}, deleted_at=None)
    assert subscription_matches(subscription, _event(category=category)) is category.startswith(
        prefix
    )


@pytest.mark.parametrize(
    "case",
    [{"grid": None}, {"category": None}, {"severity": None}],
    ids=["no grid", "no category", "no severity"],
)
def test_a_case_without_the_field_filtered_on_does_not_match(case):
    subscription = _subscription(category="event:04*", grid="110101", min_severity="blue")
    assert subscription_matches(subscription, _event(**case)) is False


def test_a_deleted_subscription_gets_nothing():
    assert subscription_matches(_subscription(deleted=True), _event()) is False


def test_an_event_without_a_case_snapshot_passes_only_an_empty_filter():
    event = OutboxEvent(id="evt_1", type=CaseEventType.OPENED.value, body={})
    assert subscription_matches(_subscription(), event) is True
    assert subscription_matches(_subscription(min_severity="blue"), event) is False


# ------------------------------------------------------------------------------------- secrets
def _rotated(
    expires_at: datetime | None, previous: str | None = "whsec_old"
) -> WebhookSubscription:
    return WebhookSubscription(
        secret="whsec_new", previous_secret=previous, previous_secret_expires_at=expires_at
    )


@pytest.mark.parametrize(
    ("subscription", "secrets"),
    [
        (_rotated(None, previous=None), ["whsec_new"]),
        (_rotated(NOW + timedelta(seconds=1)), ["whsec_new", "whsec_old"]),
        (_rotated(NOW), ["whsec_new"]),  # the overlap ends at its instant
        (_rotated(NOW - timedelta(hours=1)), ["whsec_new"]),
        (_rotated(NOW + timedelta(hours=1), previous=None), ["whsec_new"]),
    ],
    ids=["never rotated", "in the overlap", "overlap ends", "after it", "retired at once"],
)
def test_the_previous_secret_signs_until_the_overlap_ends(subscription, secrets):
    assert signing_secrets(subscription, NOW) == secrets


def test_a_generated_secret_is_32_random_bytes():
    first, second = generate_secret(), generate_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert secret_problem(first) is None


def _b64(size: int, *, pad: bool = True) -> str:
    encoded = base64.b64encode(bytes(range(size))).decode()
    return encoded if pad else encoded.rstrip("=")


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("whsec_" + _b64(24), None),
        ("whsec_" + _b64(64), None),
        ("whsec_" + _b64(25, pad=False), None),
        (_b64(32), "must start with 'whsec_'"),
        ("whsec_" + _b64(16), "must encode 24 to 64 bytes (Standard Webhooks), not 16"),
        ("whsec_" + _b64(65), "must encode 24 to 64 bytes (Standard Webhooks), not 65"),
        ("whsec_not base64!", "followed by base64"),
        ("whsec_", "followed by base64"),
        ("whsec_A", "is not valid base64"),
    ],
)
def test_secrets_given_must_be_standard_webhooks_secrets(secret, problem):
    found = secret_problem(secret)
    assert found is None if problem is None else problem in (found or "")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://dispatch.example/hooks?x=1", None),
        ("http://127.0.0.1:8080/webhook", None),
        ("http://[::1]:8080/", None),
        ("ftp://dispatch.example/hooks", "must be an http:// or https:// URL, not ftp"),
        ("/hooks", "not relative"),
        ("dispatch.example/hooks", "not relative"),
        ("https:///hooks", "must name a host"),
        ("http://dispatch.example:99999/", "is not a valid URL"),
        ("http://dispatch.example:0/", "must not use port 0"),
        ("https://dispatch.example/a hook", "must not contain whitespace"),
        ("https://dispatch.example/hooks#top", "must not have a #fragment"),
    ],
)
def test_receiver_urls_must_be_absolute_http(url, problem):
    found = url_problem(url)
    assert found is None if problem is None else problem in (found or "")


@pytest.mark.parametrize(
    ("wanted", "field"),
    [
        ({"category": "event:04**"}, "category"),
        ({"category": "event 04"}, "category"),
        ({"grid": "1101"}, "grid"),
        ({"grid": "990101"}, "grid"),
        ({"min_severity": "purple"}, "min_severity"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_filter_names_its_field(wanted, field):
    with pytest.raises(ValidationError) as caught:
        SubscriptionFilter.model_validate(wanted)
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]
