"""An alarm back soon after its case was closed reopens that case (SQLite and PostgreSQL)."""

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gridwatch.cases.lifecycle import Action
from gridwatch.cases.models import Case, CaseStatus
from gridwatch.cases.policy import shipped_policy
from gridwatch.cases.service import apply_alarm
from gridwatch.domain import AlarmTransition, Severity
from tests.cases.support import PATHS, drive, outbox, snapshot
from tests.integration.factories import alarm, rain_sensor

HOUR = 3600
# The first alarm is at 08:00; drive() takes its steps (closing too) in the minutes after 09:00.
CLOSED = PATHS[CaseStatus.CLOSED]


async def _alarm(sessions, transition, *, seconds, severity=Severity.BLUE, **options):
    async with sessions() as session, session.begin():
        event = alarm(transition, severity, seconds=seconds)
        return await apply_alarm(session=session, alarm=event, sensor=rain_sensor(), **options)


async def _closed_case(sessions, path=CLOSED, **options):
    # Handled, the alarm cleared (so it verifies), then taken along `path`.
    first = await _alarm(sessions, AlarmTransition.RAISED, seconds=0, **options)
    await _alarm(sessions, AlarmTransition.CLEARED, seconds=60, **options)
    await drive(sessions, first.case_id, path)
    return first


async def _count(sessions):
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(Case))


@pytest.mark.parametrize("closed", [CaseStatus.CLOSED, CaseStatus.EVALUATED])
async def test_a_recurrence_within_the_window_reopens_the_case(sessions, closed):
    first = await _alarm(sessions, AlarmTransition.RAISED, seconds=0, severity=Severity.RED)
    await _alarm(sessions, AlarmTransition.CLEARED, seconds=60)
    await drive(sessions, first.case_id, PATHS[closed])

    again = await _alarm(sessions, AlarmTransition.RAISED, seconds=23 * HOUR)

    assert again.case_id == first.case_id
    assert again.event_type is not None
    assert again.event_type.value == "gridwatch.case.reopened"
    case = await snapshot(sessions, first.case_id)
    assert (case.status, case.reopen_count, case.occurrences, case.alarm_active) == (
        "reported", 1, 2, True,
    )  # fmt: skip
    assert (case.severity, case.score, case.closed_at) == ("blue", None, None)
    assert case.open_fingerprint == case.case_key == "RG-1/burst"
    entry = case.history[-1]
    assert (entry.action, entry.actor, entry.from_status, entry.to_status) == (
        "reopen", "rules", closed, "reported",
    )  # fmt: skip
    assert entry.data["recurrence"] is True
    assert (await outbox(sessions, case.id))[-1].body["data"]["status"] == "reported"
    assert await _count(sessions) == 1


async def test_the_reopened_case_takes_the_repeats(sessions):
    first = await _closed_case(sessions)
    await _alarm(sessions, AlarmTransition.RAISED, seconds=2 * HOUR)
    repeat = await _alarm(sessions, AlarmTransition.REPEATED, seconds=2 * HOUR + 60)
    assert repeat.case_id == first.case_id
    assert (await snapshot(sessions, first.case_id)).occurrences == 3


@pytest.mark.parametrize(
    ("seconds", "options"),
    [
        (26 * HOUR, {}),
        (3 * HOUR, {"policy": replace(shipped_policy(), reopen_within=timedelta(hours=1))}),
    ],
    ids=["default-24h", "configured-1h"],
)
async def test_a_recurrence_after_the_window_opens_a_new_case(sessions, seconds, options):
    first = await _closed_case(sessions, **options)

    again = await _alarm(sessions, AlarmTransition.RAISED, seconds=seconds, **options)

    assert again.case_id != first.case_id
    assert again.event_type is not None
    assert again.event_type.value == "gridwatch.case.opened"
    assert (await snapshot(sessions, first.case_id)).status == "closed"
    assert await _count(sessions) == 2


async def test_a_case_cancelled_as_a_false_alarm_is_not_reopened(sessions):
    first = await _alarm(sessions, AlarmTransition.RAISED, seconds=0)
    await drive(sessions, first.case_id, [Action.CANCEL])
    again = await _alarm(sessions, AlarmTransition.RAISED, seconds=HOUR)
    assert again.case_id != first.case_id


async def test_only_the_latest_case_of_the_alarm_is_reopened(sessions):
    first = await _closed_case(sessions)
    second = await _alarm(sessions, AlarmTransition.RAISED, seconds=30 * HOUR)
    assert second.case_id != first.case_id
    await drive(sessions, second.case_id, [Action.CANCEL])

    third = await _alarm(sessions, AlarmTransition.RAISED, seconds=31 * HOUR)

    assert len({first.case_id, second.case_id, third.case_id}) == 3


async def test_a_clear_after_closing_changes_nothing(sessions):
    first = await _closed_case(sessions)
    cleared = await _alarm(sessions, AlarmTransition.CLEARED, seconds=HOUR)
    assert (cleared.case_id, cleared.event_type) == ("", None)
    assert (await snapshot(sessions, first.case_id)).status == "closed"


async def test_test_cases_recur_apart_from_live_ones(sessions):
    test = await _closed_case(sessions, test=True)
    live = await _alarm(sessions, AlarmTransition.RAISED, seconds=HOUR)
    assert live.case_id != test.case_id
    assert (await snapshot(sessions, test.case_id)).case_key == "test:RG-1/burst"
