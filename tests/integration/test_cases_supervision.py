"""Supervision (督办) passes with frozen time on SQLite and PostgreSQL, and a dead database."""

import asyncio
import logging
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from gridwatch.cases.lifecycle import Action
from gridwatch.cases.oversight import Step
from gridwatch.cases.policy import shipped_policy
from gridwatch.gateway.db import create_engine, migrate, session_factory
from gridwatch.gateway.metrics import Metrics
from gridwatch.service.supervision import Supervisor
from tests.cases.support import LATER, outbox, snapshot
from tests.cases.timing_support import COMMUNITY, DISTRICT, STREET, act, apply, raised, sensor

T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
SHIPPED = shipped_policy()


class Woken:
    """Counts the relay wake-ups a supervisor asks for."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def supervisor(sessions, woken=None, **options):
    return Supervisor(
        sessions=sessions,
        policy=SHIPPED,
        interval_s=options.pop("interval_s", 30.0),
        on_committed=woken or Woken(),
        metrics=Metrics(),
        **options,
    )


async def _entrapment(sessions, *, test=False):
    # A red entrapment, no routing: due for dispatch at T0 + 5m, the warning starting a fifth
    # of the limit before, at T0 + 4m.
    change = await apply(sessions, raised(T0), sensor("EL-2"), test=test, policy=SHIPPED)
    return change.case_id


async def _types(sessions, case_id):
    return [event.type for event in await outbox(sessions, case_id)]


async def test_a_case_not_yet_due_is_left_alone(sessions):
    case_id = await _entrapment(sessions)
    woken = Woken()
    assert await supervisor(sessions, woken).run_pass(T0 + 3 * MINUTE) == []
    case = await snapshot(sessions, case_id)
    assert (case.version, case.due_soon, case.overdue, len(case.history)) == (1, False, False, 1)
    assert woken.count == 0


async def test_a_case_due_soon_is_warned_once(sessions):
    case_id = await _entrapment(sessions)
    woken = Woken()
    watch = supervisor(sessions, woken)

    first = await watch.run_pass(T0 + 4 * MINUTE + 30 * SECOND)
    again = await watch.run_pass(T0 + 4 * MINUTE + 50 * SECOND)

    assert [(f.case_id, f.step) for f in first] == [(case_id, Step.DUE_SOON)]
    assert again == []
    case = await snapshot(sessions, case_id)
    assert (case.due_soon, case.overdue, case.version) == (True, False, 2)
    entry = case.history[-1]
    assert (entry.action, entry.actor, entry.to_status) == ("due_soon", "supervision", "reported")
    assert (entry.data["stage"], entry.data["remaining_s"]) == ("dispatch", 30)
    assert (await _types(sessions, case_id))[-1] == "gridwatch.case.updated"
    assert woken.count == 1


async def test_an_overdue_case_is_flagged_once_escalated_and_announced(sessions):
    case_id = await _entrapment(sessions)
    watch = supervisor(sessions)

    flagged = await watch.run_pass(T0 + 6 * MINUTE)
    repeat = await watch.run_pass(T0 + 9 * MINUTE)

    assert [(f.step, f.level, f.escalated_to) for f in flagged] == [(Step.OVERDUE, 1, COMMUNITY)]
    assert repeat == []
    case = await snapshot(sessions, case_id)
    assert (case.overdue, case.due_soon, case.supervision_level) == (True, False, 1)
    entry = case.history[-1]
    assert (entry.action, entry.actor) == ("overdue", "supervision")
    assert entry.data == {
        "stage": "dispatch", "due_at": "2026-07-20T08:05:00+00:00", "clock": "wall",
        "overdue_by_s": 60, "level": 1, "escalated_to": COMMUNITY,
    }  # fmt: skip
    assert (
        entry.note
        == f"督办: the dispatch deadline passed 1m ago; escalated to community {COMMUNITY}"
    )
    events = await outbox(sessions, case_id)
    assert [e.type for e in events] == ["gridwatch.case.opened", "gridwatch.case.overdue"]
    assert (events[-1].body["data"]["overdue"], events[-1].body["data"]["supervision_level"]) == (
        True, 1,
    )  # fmt: skip


async def test_each_further_stage_limit_late_goes_one_level_up_to_the_district(sessions):
    case_id = await _entrapment(sessions)
    watch = supervisor(sessions)
    levels = []
    # Due at 5m, limit 5m: overdue, then street at 10m, district at 15m, then nothing more.
    for minute in (6, 9, 10, 12, 15, 20, 60, 600):
        levels += [
            (minute, f.step, f.escalated_to) for f in await watch.run_pass(T0 + minute * MINUTE)
        ]

    assert levels == [
        (6, Step.OVERDUE, COMMUNITY),
        (10, Step.ESCALATE, STREET),
        (15, Step.ESCALATE, DISTRICT),
    ]
    case = await snapshot(sessions, case_id)
    assert case.supervision_level == 3
    assert [h.action for h in case.history].count("supervision_escalated") == 2
    assert (await _types(sessions, case_id)).count("gridwatch.case.overdue") == 3


async def test_dispatching_an_overdue_case_starts_a_fresh_deadline(sessions):
    case_id = await _entrapment(sessions)
    watch = supervisor(sessions)
    await watch.run_pass(T0 + 11 * MINUTE)
    await watch.run_pass(T0 + 11 * MINUTE)
    assert (await snapshot(sessions, case_id)).supervision_level == 2

    await act(sessions, case_id, Action.DISPATCH, T0 + 12 * MINUTE, unit="sme")

    case = await snapshot(sessions, case_id)
    assert (case.overdue, case.due_soon, case.supervision_level, case.due_at) == (
        False, False, 0, T0 + 42 * MINUTE,
    )  # fmt: skip
    # The new (handling) deadline is supervised afresh.
    assert await watch.run_pass(T0 + 20 * MINUTE) == []
    assert [f.step for f in await watch.run_pass(T0 + 43 * MINUTE)] == [Step.OVERDUE]
    assert (await snapshot(sessions, case_id)).history[-1].data["stage"] == "handle"


async def test_an_approved_postponement_clears_the_overdue_flag(sessions):
    case_id = await _entrapment(sessions)
    await act(sessions, case_id, Action.DISPATCH, T0 + MINUTE)
    await act(sessions, case_id, Action.ACCEPT, T0 + 2 * MINUTE)
    watch = supervisor(sessions)
    assert [f.step for f in await watch.run_pass(T0 + 40 * MINUTE)] == [Step.OVERDUE]
    await act(sessions, case_id, Action.POSTPONE, T0 + 41 * MINUTE)
    # Still overdue while the postponement waits: the old deadline holds.
    assert (await snapshot(sessions, case_id)).overdue is True

    await act(sessions, case_id, Action.APPROVE_POSTPONE, T0 + 42 * MINUTE)

    case = await snapshot(sessions, case_id)
    assert (case.status, case.due_at, case.overdue, case.supervision_level) == (
        "accepted", LATER, False, 0,
    )  # fmt: skip
    assert await watch.run_pass(T0 + 50 * MINUTE) == []


async def test_finished_and_test_cases_are_not_supervised(sessions):
    test_case = await _entrapment(sessions, test=True)
    cancelled = await apply(sessions, raised(T0, sensor_id="EL-3"), sensor("EL-3"), policy=SHIPPED)
    await act(sessions, cancelled.case_id, Action.CANCEL, T0 + MINUTE)

    assert await supervisor(sessions).run_pass(T0 + 60 * MINUTE) == []
    assert (await snapshot(sessions, test_case)).overdue is False


async def test_a_pass_works_through_every_batch(sessions):
    ids = []
    for number in range(5):
        device = sensor(f"EL-{number + 10}")
        change = await apply(sessions, raised(T0, sensor_id=device.id), device, policy=SHIPPED)
        ids.append(change.case_id)

    flagged = await supervisor(sessions, batch_size=2).run_pass(T0 + 6 * MINUTE)

    assert sorted(f.case_id for f in flagged) == sorted(ids)


async def test_a_pass_on_a_missing_database_is_logged_and_the_next_one_catches_up(tmp_path, caplog):
    folder = tmp_path / "db"
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'gridwatch.db'}")
    shutil.rmtree(folder)  # the engine made it; now there is nowhere to open the file
    sessions = session_factory(engine)
    woken = Woken()
    watch = supervisor(sessions, woken, interval_s=0.01)
    try:
        with caplog.at_level(logging.WARNING, logger="gridwatch.supervision"):
            task = asyncio.create_task(watch.run())
            await asyncio.sleep(0.1)
            assert not task.done()
            assert "supervision pass skipped: database error" in caplog.text

            folder.mkdir()
            await migrate(engine)
            await apply(sessions, raised(T0 - 60 * MINUTE), sensor(), policy=SHIPPED)
            for _ in range(200):
                if woken.count:
                    break
                await asyncio.sleep(0.01)
            assert woken.count >= 1
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await engine.dispose()


async def test_a_pass_on_an_unreachable_postgresql_does_not_end_the_task(caplog):
    engine = create_engine("postgresql+asyncpg://gridwatch@127.0.0.1:1/gridwatch")
    watch = supervisor(session_factory(engine), interval_s=0.01)
    try:
        with caplog.at_level(logging.WARNING, logger="gridwatch.supervision"):
            task = asyncio.create_task(watch.run())
            await asyncio.sleep(0.2)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert caplog.text.count("supervision pass skipped") >= 2
    finally:
        await engine.dispose()
