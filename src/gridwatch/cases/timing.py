"""A case's deadline through the loop: which stage is timed, and when its deadline moves.

The one place that sets `due_at`: opening and reopening start the dispatch deadline,
dispatching and rework the handling one, feedback the verification one; a verified, closed or
cancelled case has none. Every move clears the due-soon and overdue flags and the supervision
level, since they were about the deadline that is gone.
"""

from collections.abc import Mapping
from datetime import datetime

from gridwatch.cases.models import Case, CaseStatus
from gridwatch.cases.policy import CasePolicy
from gridwatch.domain.deadlines import Deadline, Stage
from gridwatch.domain.severity import Severity

# The stage a case in each status is timed on; statuses not listed have no deadline.
STAGE_OF: Mapping[CaseStatus, Stage] = {
    CaseStatus.REPORTED: Stage.DISPATCH,
    CaseStatus.DISPATCHED: Stage.HANDLE,
    CaseStatus.ACCEPTED: Stage.HANDLE,
    # A pending postponement does not stop the clock: the old deadline holds until approved.
    CaseStatus.POSTPONED: Stage.HANDLE,
    CaseStatus.HANDLED: Stage.VERIFY,
}


def start_stage(
    case: Case, policy: CasePolicy, stage: Stage, at: datetime, *, due: datetime | None = None
) -> None:
    """Start `stage`'s deadline at `at`: the policy's, or `due` when a person gave one."""
    if due is None:
        found = policy.deadline(
            category=case.category, severity=Severity(case.severity), stage=stage, start=at
        )
        due = None if found is None else found.due
    move_deadline(case, due, since=at)
    if stage is Stage.DISPATCH and case.dispatch_due_at is None:
        case.dispatch_due_at = due


def move_deadline(case: Case, due: datetime | None, *, since: datetime | None) -> None:
    """Set the case's deadline (None: none) and forget the flags of the previous one."""
    case.due_at = due
    case.due_since = None if due is None else since
    case.due_soon = False
    case.overdue = False
    case.supervision_level = 0


def end_deadlines(case: Case) -> None:
    """The case left the timed stages (verified, closed, cancelled)."""
    move_deadline(case, None, since=None)


def tighten(case: Case, policy: CasePolicy) -> None:
    """After a severity escalation: the stage's deadline for the new severity, if sooner.

    A rainstorm case reported blue and turning red must be dispatched in the red limit,
    counted from when the stage began; a later deadline is never given for a worse case.
    """
    stage = STAGE_OF.get(CaseStatus(case.status))
    # Already overdue, it is already under supervision: an earlier deadline would only reset
    # its escalation and flag it again.
    if stage is None or case.due_at is None or case.overdue:
        return
    since = case.due_since or case.opened_at
    found = policy.deadline(
        category=case.category, severity=Severity(case.severity), stage=stage, start=since
    )
    if found is not None and found.due < case.due_at:
        move_deadline(case, found.due, since=since)
        if stage is Stage.DISPATCH and case.dispatched_at is None:
            case.dispatch_due_at = found.due


def current_deadline(case: Case, policy: CasePolicy) -> Deadline | None:
    """The deadline the case runs against now, None when it has none."""
    stage = STAGE_OF.get(CaseStatus(case.status))
    if stage is None or case.due_at is None:
        return None
    return policy.deadline(
        category=case.category,
        severity=Severity(case.severity),
        stage=stage,
        start=case.due_since or case.opened_at,
        due=case.due_at,
    )
