"""Supervision (督办) of case deadlines: due-soon warnings, overdue flags, escalation up the grid.

`next_step` decides, from the policy and the case's current deadline, what one pass does to a
case; `flag` does it: the flag, a history entry by `supervision`, and an outbox event. An
overdue case is escalated one grid level above its own (community, then street, then
district); each further full stage limit it stays late takes it one level higher.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only, selectinload

from gridwatch.cases import lifecycle, timing
from gridwatch.cases.events import CaseEventType
from gridwatch.cases.journal import emit_event, record
from gridwatch.cases.models import Case, CaseStatus
from gridwatch.cases.policy import CasePolicy
from gridwatch.domain.deadlines import Deadline, DeadlineStatus, status
from gridwatch.registry.grid import GridLevel, parse_grid_code

SUPERVISION_ACTOR = "supervision"
# A unit-grid case goes at most to its district: community, street, district.
TOP_LEVEL = len(GridLevel) - 1


class Step(StrEnum):
    """What supervision does to a case; the value is its history action."""

    DUE_SOON = lifecycle.DUE_SOON
    OVERDUE = lifecycle.OVERDUE
    ESCALATE = lifecycle.SUPERVISION_ESCALATED


# What `next_step` reads: a pass scans every timed case, so it loads only these columns.
_TIMING = (
    Case.id, Case.status, Case.category, Case.severity, Case.grid, Case.drill, Case.opened_at,
    Case.due_at, Case.due_since, Case.due_soon, Case.overdue, Case.supervision_level,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Flagged:
    """One case a pass changed: the step, the supervision level after it and who supervises."""

    case_id: str
    step: Step
    level: int
    escalated_to: str | None
    event: CaseEventType


def next_step(case: Case, policy: CasePolicy, now: datetime) -> Step | None:
    """What supervision does to the case at `now`, None when nothing is due."""
    late = timing.current_deadline(case, policy)
    if late is None or case.drill:
        return None
    match status(late, now):
        case DeadlineStatus.OVERDUE if not case.overdue:
            return Step.OVERDUE
        case DeadlineStatus.OVERDUE:
            level = case.supervision_level
            higher = 0 < level < len(policy.supervisors(case.grid))
            return Step.ESCALATE if higher and now >= policy.escalates_at(late, level) else None
        case DeadlineStatus.DUE_SOON if not (case.due_soon or case.overdue):
            return Step.DUE_SOON
        case _:
            return None


async def candidates(
    session: AsyncSession, *, now: datetime, after: str, limit: int
) -> Sequence[Case]:
    """A page of cases (ids after `after`) supervision may have to act on, their timing only.

    Excluded in the query: cases without a deadline (finished, or no limit), tests and
    drills, cases already at the top level, and cases already warned that are not yet due.
    """
    query = (
        select(Case)
        .options(load_only(*_TIMING))
        .where(
            Case.id > after,
            Case.due_at.is_not(None),
            Case.drill.is_(False),
            not_(and_(Case.overdue, Case.supervision_level >= TOP_LEVEL)),
            or_(Case.due_soon.is_(False), Case.overdue, Case.due_at <= now),
        )
        .order_by(Case.id)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def flag(
    *, session: AsyncSession, case_ids: Sequence[str], policy: CasePolicy, now: datetime
) -> list[Flagged]:
    """Take each case's step at `now` in the caller's transaction; cases changed since they
    were read are decided again."""
    cases = await session.scalars(
        select(Case)
        .where(Case.id.in_(case_ids))
        .order_by(Case.id)
        .options(selectinload(Case.history))
        .with_for_update()
    )
    flagged: list[Flagged] = []
    for case in cases.all():
        step = next_step(case, policy, now)
        late = timing.current_deadline(case, policy)
        if step is None or late is None:
            continue
        flagged.append(await _take(session, case, step, late, policy, now))
    return flagged


async def _take(
    session: AsyncSession,
    case: Case,
    step: Step,
    late: Deadline,
    policy: CasePolicy,
    now: datetime,
) -> Flagged:
    stage = late.stage.value
    data: dict[str, Any] = {"stage": stage, "due_at": late.due.isoformat(), "clock": late.clock}
    event = CaseEventType.OVERDUE
    escalated_to: str | None = None
    if step is Step.DUE_SOON:
        left = late.remaining(now)
        case.due_soon = True
        data["remaining_s"] = int(left.total_seconds())
        note = f"{stage} deadline {late.due:%Y-%m-%d %H:%M}Z in {_span(left)} (即将超时)"
        # The receiver's copy of the case should show the warning too; one event per stage.
        event = CaseEventType.UPDATED
    else:
        supervisors = policy.supervisors(case.grid)
        if step is Step.OVERDUE:
            case.overdue = True
            case.due_soon = False
            case.overdue_count += 1
        if case.supervision_level < len(supervisors):
            case.supervision_level += 1
            escalated_to = supervisors[case.supervision_level - 1]
        overdue_by = -late.remaining(now)
        data |= {
            "overdue_by_s": int(overdue_by.total_seconds()),
            "level": case.supervision_level,
            "escalated_to": escalated_to,
        }
        where = (
            f"; escalated to {parse_grid_code(escalated_to).level.value} {escalated_to}"
            if escalated_to is not None
            else ""
        )
        note = f"督办: the {stage} deadline passed {_span(overdue_by)} ago{where}"
    case.version += 1
    case.updated_at = max(case.updated_at, now)
    record(
        case,
        at=now,
        actor=SUPERVISION_ACTOR,
        action=step.value,
        from_status=CaseStatus(case.status),
        note=note,
        data=data,
    )
    emit_event(session, case, event, now)
    return Flagged(case.id, step, case.supervision_level, escalated_to, event)


def _span(duration: timedelta) -> str:
    minutes = max(0, int(duration.total_seconds()) // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"]
    return " ".join(parts)
