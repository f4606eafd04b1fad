"""People move cases through the loop: manual reports and transitions, each with its event.

Optimistic concurrency: a transition names the version it was decided on, and its write is
the conditional UPDATE of the case's mapper (`WHERE id = :id AND version = :v`), so of two
writers at one version exactly one wins, on SQLite as on PostgreSQL.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from gridwatch.cases import lifecycle, timing
from gridwatch.cases.dispatching import assign, auto_dispatch
from gridwatch.cases.errors import CaseNotFoundError, InvalidRequestError, VersionMismatchError
from gridwatch.cases.events import CaseEventType
from gridwatch.cases.journal import emit_event, record
from gridwatch.cases.lifecycle import Action, Input, TransitionRefusedError
from gridwatch.cases.models import Case, CaseHistory, CaseStatus, reported_case
from gridwatch.cases.policy import CasePolicy, shipped_policy
from gridwatch.cases.requests import CaseReport, TransitionRequest
from gridwatch.cases.service import get_case, new_case_id
from gridwatch.domain.deadlines import Stage

MANUAL_KIND = "manual"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: `id` is what history records (`key_…`, `cli:alice`); `name` is kept beside it."""

    id: str
    name: str = ""

    def data(self) -> dict[str, Any]:
        """What a history entry keeps about the actor beyond its id."""
        return {"actor_name": self.name} if self.name and self.name != self.id else {}


async def report_case(
    *,
    session: AsyncSession,
    report: CaseReport,
    actor: Actor,
    at: datetime,
    policy: CasePolicy | None = None,
) -> Case:
    """Open a case reported by a person; it enters the loop as reported, like an alarm's.

    It is routed like a sensor's case, without an asset owner: a route dispatches it at once.
    """
    policy = policy or shipped_policy()
    links = [str(link) for link in report.evidence]
    # No alarm repeats or recurs into a manual case, so it holds no open key.
    case = reported_case(
        id=new_case_id(at),
        severity=report.severity.value,
        category=report.category,
        kind=MANUAL_KIND,
        title=report.title,
        at=at,
        grid=report.grid,
        evidence={"links": links},
        description=report.description,
        location=report.location.model_dump() if report.location else None,
    )
    record(
        case,
        at=at,
        actor=actor.id,
        action=lifecycle.REPORT,
        from_status=None,
        note=report.title,
        data={"severity": report.severity.value, "evidence": links} | actor.data(),
    )
    timing.start_stage(case, policy, Stage.DISPATCH, at)
    session.add(case)
    emit_event(session, case, CaseEventType.OPENED, at)
    auto_dispatch(session=session, case=case, policy=policy, owner=None, at=at)
    return case


async def transition(
    *,
    session: AsyncSession,
    case_id: str,
    versions: frozenset[int],
    request: TransitionRequest,
    actor: Actor,
    at: datetime,
    include_test: bool = True,
    policy: CasePolicy | None = None,
) -> Case:
    """Take `request.action` on the case if it is at one of `versions`; returns the case.

    Raises InvalidRequestError (inputs), CaseNotFoundError, VersionMismatchError (the case is
    not at one of `versions`, or a concurrent writer won) or TransitionRefusedError (not now,
    in this state); the caller's transaction then holds no change. The case's deadline
    follows the action (`timing`); `policy` defaults to the shipped one.
    """
    policy = policy or shipped_policy()
    action = request.action
    problems = lifecycle.request_problems(action, request.given(), denied=request.approved is False)
    if request.due_at is not None and request.due_at <= at:
        problems.setdefault(Input.DUE_AT, "must be in the future")
    if problems:
        raise InvalidRequestError(problems)
    case = await get_case(session=session, case_id=case_id)
    if case is None or (case.drill and not include_test):
        raise CaseNotFoundError(case_id)
    if case.version not in versions:
        raise VersionMismatchError(case_id=case_id, expected=versions, current=case.version)
    state = CaseStatus(case.status)
    target = lifecycle.next_state(state, action)
    # Every check (and query) comes before the first change: a query would autoflush it.
    await _check(session, case, state, request)
    data = _apply(case, request, at, policy)
    case.status = target.value
    case.version += 1
    case.updated_at = max(case.updated_at, at)
    record(
        case,
        at=at,
        actor=actor.id,
        action=action,
        from_status=state,
        note=request.note.strip(),
        data=data | _links(request) | actor.data(),
    )
    emit_event(session, case, lifecycle.SPECS[action].event, at)
    try:
        # Now, so a concurrent writer's win is this call's VersionMismatchError, not the
        # caller's commit failing.
        await session.flush()
    except StaleDataError as err:
        raise VersionMismatchError(case_id=case_id, expected=versions, current=None) from err
    return case


async def _check(
    session: AsyncSession, case: Case, state: CaseStatus, request: TransitionRequest
) -> None:
    match request.action:
        case Action.VERIFY:
            reason = lifecycle.sensor_gate(
                sensor_raised=case.sensor_id is not None,
                alarm_active=case.alarm_active,
                override=request.override,
            )
            if reason is not None:
                raise TransitionRefusedError(state=state, action=request.action, reason=reason)
        case Action.POSTPONE if case.due_at is not None:
            assert request.due_at is not None  # required for postpone
            if request.due_at <= case.due_at:
                raise InvalidRequestError(
                    {Input.DUE_AT: f"must be after the deadline {case.due_at}"}
                )
        case Action.REOPEN if case.case_key is not None:
            holder = await session.scalar(
                select(Case.id).where(Case.open_fingerprint == case.case_key)
            )
            if holder is not None:
                reason = f"case {holder} is open for the same alarm; work on that one"
                raise TransitionRefusedError(state=state, action=request.action, reason=reason)
        case _:
            pass


def _apply(
    case: Case, request: TransitionRequest, at: datetime, policy: CasePolicy
) -> dict[str, Any]:
    # The case's changes for the action; returns what its history entry records about them.
    match request.action:
        case Action.DISPATCH:
            assert request.unit is not None  # required for dispatch
            return assign(case, policy, unit=request.unit, at=at, due=request.due_at)
        case Action.FEEDBACK:
            case.handled_at = at
            timing.start_stage(case, policy, Stage.VERIFY, at)
            return {}
        case Action.VERIFY:
            timing.end_deadlines(case)
            return _verification(case, override=request.override)
        case Action.REJECT:
            case.rework_count += 1
            timing.start_stage(case, policy, Stage.HANDLE, at)
            return {"rework": case.rework_count}
        case Action.CLOSE | Action.CANCEL:
            # Off the open key: the alarm's next raise reopens or opens, never updates it.
            case.open_fingerprint = None
            case.closed_at = at
            timing.end_deadlines(case)
            return {}
        case Action.POSTPONE:
            assert request.due_at is not None  # required for postpone
            case.requested_due_at = request.due_at
            return {"due_at": request.due_at.isoformat(), "previous_due_at": _iso(case.due_at)}
        case Action.APPROVE_POSTPONE:
            approved = request.approved is not False
            if approved and case.requested_due_at is not None:
                # The stage's limit grows; its clock still runs from when the stage began.
                since = case.due_since or at
                timing.move_deadline(case, case.requested_due_at, since=since)
            case.requested_due_at = None
            return {"approved": approved, "due_at": _iso(case.due_at)}
        case Action.EVALUATE:
            case.score = request.score
            return {"score": request.score}
        case Action.REOPEN:
            case.open_fingerprint = case.case_key
            case.closed_at = None
            case.score = None
            case.reopen_count += 1
            timing.start_stage(case, policy, Stage.DISPATCH, at)
            return {"reopenings": case.reopen_count}
        case _:
            return {}


def _verification(case: Case, *, override: bool) -> dict[str, Any]:
    if case.sensor_id is None:
        return {}
    # What the sensor said when it stopped alarming is what verifies the handling; with an
    # override it may have said nothing yet, and the officer's note stands in for it.
    cleared = _clearance(case.history)
    return {
        "override": override,
        "alarm_active": case.alarm_active,
        "cleared": {"at": cleared.at.isoformat(), **cleared.data} if cleared else None,
        "alarm_evidence": case.evidence,
    }


def _clearance(history: list[CaseHistory]) -> CaseHistory | None:
    # The latest alarm_cleared of the current episode (since it was reported or reopened).
    for entry in reversed(history):
        if entry.action == lifecycle.ALARM_CLEARED:
            return entry
        if entry.action in (lifecycle.REPORT, Action.REOPEN):
            return None
    return None


def _links(request: TransitionRequest) -> dict[str, Any]:
    return {"evidence": [str(link) for link in request.evidence]} if request.evidence else {}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
