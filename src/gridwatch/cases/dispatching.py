"""Handing a case to a unit: by an officer, or by the routing table as the case opens."""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.cases import lifecycle, timing
from gridwatch.cases.events import CaseEventType
from gridwatch.cases.journal import emit_event, record
from gridwatch.cases.models import Case, CaseStatus
from gridwatch.cases.policy import CasePolicy
from gridwatch.cases.routing import Route
from gridwatch.domain.deadlines import Stage

AUTO_DISPATCH_ACTOR = "auto-dispatch"


def assign(
    case: Case, policy: CasePolicy, *, unit: str, at: datetime, due: datetime | None = None
) -> dict[str, Any]:
    """Give the case to `unit` and start its handling deadline; returns the history data.

    Moving a dispatched case to another unit is a reassignment: it is counted, since an
    auto-dispatch that people had to correct was not accurate.
    """
    data: dict[str, Any] = {"unit": unit}
    if CaseStatus(case.status) is CaseStatus.DISPATCHED and case.unit != unit:
        data["reassigned_from"] = case.unit
        case.reassignments += 1
    case.unit = unit
    if case.dispatched_at is None:
        case.dispatched_at = at
    timing.start_stage(case, policy, Stage.HANDLE, at, due=due)
    if due is not None:
        data["due_at"] = due.isoformat()
    return data


def auto_dispatch(
    *, session: AsyncSession, case: Case, policy: CasePolicy, owner: str | None, at: datetime
) -> Route | None:
    """Dispatch a just reported case where the routing table sends it; None leaves it to people.

    Test and drill cases are never dispatched: they would send a real unit to a sensor being
    installed.
    """
    if case.drill:
        return None
    found = policy.route(category=case.category, grid=case.grid, owner=owner)
    if found is None:
        return None
    previous = CaseStatus(case.status)
    target = lifecycle.next_state(previous, lifecycle.Action.DISPATCH)
    data = assign(case, policy, unit=found.unit, at=at)
    case.status = target.value
    case.auto_dispatched = True
    case.version += 1
    case.updated_at = max(case.updated_at, at)
    route_data: dict[str, Any] = {
        "entry": found.index + 1,
        "category": found.entry.category,
        "grid": found.entry.grid,
        "level": None if found.level is None else found.level.value,
        "owner": found.owner,
    }
    record(
        case,
        at=at,
        actor=AUTO_DISPATCH_ACTOR,
        action=lifecycle.Action.DISPATCH,
        from_status=previous,
        note=found.explain(),
        data=data | {"auto": True, "route": route_data},
    )
    emit_event(session, case, CaseEventType.DISPATCHED, at)
    return found
