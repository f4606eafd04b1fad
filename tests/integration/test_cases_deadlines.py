"""Deadlines on cases through the loop, on SQLite and PostgreSQL, with frozen times."""

from datetime import UTC, datetime, timedelta

import pytest

from gridwatch.cases.lifecycle import Action
from gridwatch.cases.models import CaseSummary
from gridwatch.cases.policy import shipped_policy
from gridwatch.domain import AlarmTransition, Severity
from tests.cases.support import snapshot
from tests.cases.timing_support import BEIJING, act, apply, raised, sensor

T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SHIPPED = shipped_policy()


async def _entrapment(sessions):
    change = await apply(sessions, raised(T0), sensor(), policy=SHIPPED)
    return change.case_id


async def test_a_red_entrapment_is_due_for_dispatch_in_5_minutes(sessions):
    case = await snapshot(sessions, await _entrapment(sessions))
    assert (case.status, case.due_at, case.dispatch_due_at) == ("reported", T0 + 5 * MINUTE,
                                                                T0 + 5 * MINUTE)  # fmt: skip
    assert (case.due_since, case.overdue, case.due_soon) == (T0, False, False)


async def test_each_step_moves_the_deadline_and_keeps_what_the_kpis_need(sessions):
    case_id = await _entrapment(sessions)
    dispatched = T0 + 3 * MINUTE
    await act(sessions, case_id, Action.DISPATCH, dispatched)
    case = await snapshot(sessions, case_id)
    # On site within 30 minutes of dispatch.
    assert (case.due_at, case.dispatched_at) == (dispatched + 30 * MINUTE, dispatched)

    await act(sessions, case_id, Action.ACCEPT, T0 + 4 * MINUTE)
    assert (await snapshot(sessions, case_id)).due_at == dispatched + 30 * MINUTE

    handled = T0 + 25 * MINUTE
    await act(sessions, case_id, Action.FEEDBACK, handled)
    case = await snapshot(sessions, case_id)
    assert (case.due_at, case.handled_at) == (handled + 2 * 60 * MINUTE, handled)

    await act(sessions, case_id, Action.REJECT, T0 + 30 * MINUTE)
    # Rework: a fresh on-site limit from the rejection.
    assert (await snapshot(sessions, case_id)).due_at == T0 + 60 * MINUTE

    await apply(
        sessions, raised(T0 + 31 * MINUTE, transition=AlarmTransition.CLEARED), sensor(),
        policy=SHIPPED,
    )  # fmt: skip
    for minute, action in enumerate([Action.ACCEPT, Action.FEEDBACK, Action.VERIFY], start=32):
        await act(sessions, case_id, action, T0 + minute * MINUTE)
    case = await snapshot(sessions, case_id)
    assert (case.status, case.due_at, case.due_since) == ("verified", None, None)
    # The KPIs keep the first dispatch against its deadline, and the last handling.
    assert (case.dispatch_due_at, case.dispatched_at, case.handled_at) == (
        T0 + 5 * MINUTE, dispatched, T0 + 33 * MINUTE,
    )  # fmt: skip
    await act(sessions, case_id, Action.CLOSE, T0 + 40 * MINUTE)
    assert (await snapshot(sessions, case_id)).due_at is None


async def test_an_officer_deadline_wins_over_the_policy(sessions):
    case_id = await _entrapment(sessions)
    given = T0 + 45 * MINUTE
    await act(sessions, case_id, Action.DISPATCH, T0 + MINUTE, due_at=given.isoformat())
    case = await snapshot(sessions, case_id)
    assert (case.due_at, case.due_since) == (given, T0 + MINUTE)
    assert case.history[-1].data["due_at"] == given.isoformat()


async def test_a_cancelled_case_has_no_deadline_and_a_reopened_one_a_new_dispatch_deadline(
    sessions,
):
    case_id = await _entrapment(sessions)
    await act(sessions, case_id, Action.CANCEL, T0 + MINUTE)
    assert (await snapshot(sessions, case_id)).due_at is None
    reopened = T0 + 60 * MINUTE
    await act(sessions, case_id, Action.REOPEN, reopened)
    case = await snapshot(sessions, case_id)
    assert (case.status, case.due_at) == ("reported", reopened + 5 * MINUTE)
    # The first dispatch deadline stays the one timely dispatch is measured against.
    assert case.dispatch_due_at == T0 + 5 * MINUTE


async def test_an_escalation_tightens_the_deadline_from_the_stage_start(sessions):
    rain = sensor("RG-1", kind="rain_gauge")
    opened = await apply(
        sessions, raised(T0, category="event:0401", severity=Severity.YELLOW, sensor_id="RG-1"),
        rain, policy=SHIPPED,
    )  # fmt: skip
    assert (await snapshot(sessions, opened.case_id)).due_at == T0 + 15 * MINUTE
    await apply(
        sessions,
        raised(T0 + 2 * MINUTE, category="event:0401", sensor_id="RG-1",
               transition=AlarmTransition.ESCALATED),
        rain, policy=SHIPPED,
    )  # fmt: skip
    case = await snapshot(sessions, opened.case_id)
    assert (case.severity, case.due_at, case.dispatch_due_at) == ("red", T0 + 5 * MINUTE,
                                                                   T0 + 5 * MINUTE)  # fmt: skip


def _bj(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=BEIJING)


@pytest.mark.parametrize(
    ("reported", "due"),
    [
        # 1.5 working hours on the eve, then the holiday (1-7 October), then 2.5 h on the 8th.
        (_bj(9, 30, 16), _bj(10, 8, 11)),
        # Reported on the holiday: the clock starts on the 8th at 08:30 and stops for lunch.
        (_bj(10, 3, 9), _bj(10, 8, 14)),
        # Half an hour on Friday; the make-up Saturday (10 October) is a workday.
        (_bj(10, 9, 17), _bj(10, 10, 12)),
    ],
    ids=["national-day-eve", "during-the-holiday", "make-up-saturday"],
)
async def test_a_maintenance_case_runs_on_working_time(sessions, reported, due):
    gauge = sensor("RG-9", kind="rain_gauge")
    event = raised(reported, category="maintenance:offline", severity=Severity.YELLOW,
                   sensor_id="RG-9", maintenance=True)  # fmt: skip
    change = await apply(sessions, event, gauge, policy=SHIPPED)
    case = await snapshot(sessions, change.case_id)
    assert case.due_at == due.astimezone(UTC)


async def test_the_case_json_shows_the_timing_and_dispatch_fields(sessions):
    case = CaseSummary.model_validate(await snapshot(sessions, await _entrapment(sessions)))
    shown = case.model_dump(mode="json")
    assert {
        key: shown[key]
        for key in ("due_at", "due_soon", "overdue", "supervision_level", "dispatch_due_at",
                    "dispatched_at", "handled_at", "auto_dispatched", "reassignments")
    } == {
        "due_at": "2026-07-20T08:05:00Z", "due_soon": False, "overdue": False,
        "supervision_level": 0, "dispatch_due_at": "2026-07-20T08:05:00Z",
        "dispatched_at": None, "handled_at": None, "auto_dispatched": False, "reassignments": 0,
    }  # fmt: skip
