"""Auto-dispatch from the routing table as cases open, and reassignments (SQLite, PostgreSQL)."""

from datetime import UTC, datetime, timedelta

from gridwatch.cases import transitions
from gridwatch.cases.lifecycle import Action
from gridwatch.cases.requests import CaseReport
from gridwatch.domain import AlarmTransition
from tests.cases.support import ADMIN, drive, outbox, snapshot
from tests.cases.timing_support import (
    ELEVATOR_CO,
    ELEVATOR_UNIT,
    GRID,
    ROUTED,
    act,
    apply,
    raised,
    sensor,
)

T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


async def test_a_case_is_dispatched_by_grid_fallback_in_the_opening_transaction(sessions):
    change = await apply(
        sessions, raised(T0, category="event:0401"), sensor("RG-1", kind="rain_gauge")
    )

    case = await snapshot(sessions, change.case_id)
    assert (case.status, case.unit, case.auto_dispatched, case.version) == (
        "dispatched", "dongcheng-emergency", True, 2,
    )  # fmt: skip
    # The red emergency's handling limit (1 h) runs from the dispatch.
    assert (case.dispatched_at, case.due_at, case.dispatch_due_at) == (
        T0, T0 + 60 * MINUTE, T0 + 5 * MINUTE,
    )  # fmt: skip
    entry = case.history[-1]
    assert (entry.action, entry.actor, entry.from_status, entry.to_status) == (
        "dispatch", "auto-dispatch", "reported", "dispatched",
    )  # fmt: skip
    assert (
        entry.note == "entry #1 (event:04* in 110101, district level) by grid: dongcheng-emergency"
    )
    assert entry.data["auto"] is True
    assert entry.data["route"]["level"] == "district"
    assert [e.type for e in await outbox(sessions, case.id)] == [
        "gridwatch.case.opened", "gridwatch.case.dispatched",
    ]  # fmt: skip


async def test_an_asset_owner_beats_the_grid_route(sessions):
    change = await apply(sessions, raised(T0), sensor(owner=ELEVATOR_CO))
    case = await snapshot(sessions, change.case_id)
    assert (case.status, case.unit) == ("dispatched", ELEVATOR_UNIT)
    assert case.history[-1].data["route"]["owner"] == ELEVATOR_CO
    # On site within 30 minutes of the automatic dispatch.
    assert case.due_at == T0 + 30 * MINUTE


async def test_an_unknown_owner_falls_back_to_the_entry_unit(sessions):
    change = await apply(sessions, raised(T0), sensor(owner="Someone Else Ltd."))
    assert (await snapshot(sessions, change.case_id)).unit == "dongcheng-sme"


async def test_no_route_leaves_the_case_reported_for_an_officer(sessions):
    change = await apply(
        sessions, raised(T0, category="event:0301"), sensor("CAM-1", kind="camera")
    )
    case = await snapshot(sessions, change.case_id)
    assert (case.status, case.unit, case.auto_dispatched, case.dispatched_at) == (
        "reported", None, False, None,
    )  # fmt: skip
    assert [e.type for e in await outbox(sessions, case.id)] == ["gridwatch.case.opened"]


async def test_test_cases_are_never_auto_dispatched(sessions):
    change = await apply(sessions, raised(T0), sensor(owner=ELEVATOR_CO), test=True)
    case = await snapshot(sessions, change.case_id)
    assert (case.drill, case.status, case.auto_dispatched) == (True, "reported", False)


async def test_a_manual_report_is_routed_without_an_owner(sessions):
    report = CaseReport(category="event:0102", title="Exposed garbage", grid=GRID)
    async with sessions() as session, session.begin():
        case = await transitions.report_case(
            session=session, report=report, actor=ADMIN, at=T0, policy=ROUTED
        )
    stored = await snapshot(sessions, case.id)
    assert (stored.status, stored.unit, stored.history[-1].data["route"]["level"]) == (
        "dispatched", "demo-street-sanitation", "street",
    )  # fmt: skip


async def test_a_recurrence_reopens_and_dispatches_again(sessions):
    device = sensor(owner=ELEVATOR_CO)
    first = await apply(sessions, raised(T0), device)
    await apply(sessions, raised(T0 + MINUTE, transition=AlarmTransition.CLEARED), device)
    await drive(
        sessions, first.case_id, [Action.ACCEPT, Action.FEEDBACK, Action.VERIFY, Action.CLOSE]
    )

    again = await apply(sessions, raised(T0 + 3 * 60 * MINUTE), device)

    case = await snapshot(sessions, again.case_id)
    assert again.case_id == first.case_id
    assert (case.status, case.unit, case.reopen_count) == ("dispatched", ELEVATOR_UNIT, 1)
    assert [h.actor for h in case.history if h.action == "dispatch"] == ["auto-dispatch"] * 2


async def test_an_officer_moving_an_auto_dispatched_case_is_a_counted_reassignment(sessions):
    change = await apply(sessions, raised(T0), sensor(owner=ELEVATOR_CO))

    await act(sessions, change.case_id, Action.DISPATCH, T0 + MINUTE, unit="dongcheng-sme")
    await act(sessions, change.case_id, Action.DISPATCH, T0 + 2 * MINUTE, unit="dongcheng-sme")

    case = await snapshot(sessions, change.case_id)
    assert (case.unit, case.auto_dispatched, case.reassignments) == ("dongcheng-sme", True, 1)
    moves = [h.data for h in case.history if h.action == "dispatch"]
    assert moves[1]["reassigned_from"] == ELEVATOR_UNIT
    # Dispatching again to the same unit moves nothing: not a reassignment.
    assert "reassigned_from" not in moves[2]
    # The first dispatch stays the one timely dispatch is measured by.
    assert case.dispatched_at == T0


async def test_dispatching_a_reported_case_by_hand_is_not_a_reassignment(sessions):
    change = await apply(
        sessions, raised(T0, category="event:0301"), sensor("CAM-1", kind="camera")
    )
    await act(sessions, change.case_id, Action.DISPATCH, T0 + MINUTE, unit="sanitation")
    case = await snapshot(sessions, change.case_id)
    assert (case.unit, case.auto_dispatched, case.reassignments, case.dispatched_at) == (
        "sanitation", False, 0, T0 + MINUTE,
    )  # fmt: skip
