"""Shared pieces of the case-loop tests: a valid request per action, and a path to each state."""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.cases import transitions
from gridwatch.cases.lifecycle import Action
from gridwatch.cases.models import Case, CaseStatus, OutboxEvent
from gridwatch.cases.requests import CaseReport, TransitionRequest
from gridwatch.cases.service import get_case
from gridwatch.cases.transitions import Actor

# Far enough ahead that "must be in the future" holds whenever the tests run.
LATER = datetime(2100, 1, 1, tzinfo=UTC)

VALID: dict[Action, dict[str, Any]] = {
    Action.DISPATCH: {"unit": "water-bureau"},
    Action.ACCEPT: {},
    Action.FEEDBACK: {"note": "pumped out", "evidence": ["https://files.example/after.jpg"]},
    Action.VERIFY: {},
    Action.REJECT: {"note": "still flooded"},
    Action.CLOSE: {},
    Action.CANCEL: {"note": "false alarm"},
    Action.POSTPONE: {"note": "pump broken", "due_at": LATER.isoformat()},
    Action.APPROVE_POSTPONE: {},
    Action.EVALUATE: {"score": 4},
    Action.REOPEN: {"note": "flooded again"},
}

_D, _A, _F = Action.DISPATCH, Action.ACCEPT, Action.FEEDBACK
PATHS: dict[CaseStatus, list[Action]] = {
    CaseStatus.REPORTED: [],
    CaseStatus.DISPATCHED: [_D],
    CaseStatus.ACCEPTED: [_D, _A],
    CaseStatus.POSTPONED: [_D, _A, Action.POSTPONE],
    CaseStatus.HANDLED: [_D, _A, _F],
    CaseStatus.VERIFIED: [_D, _A, _F, Action.VERIFY],
    CaseStatus.CLOSED: [_D, _A, _F, Action.VERIFY, Action.CLOSE],
    CaseStatus.EVALUATED: [_D, _A, _F, Action.VERIFY, Action.CLOSE, Action.EVALUATE],
    CaseStatus.CANCELLED: [Action.CANCEL],
}


def request(action: Action, **changes: Any) -> dict[str, Any]:
    """A complete transition body for `action`."""
    return {"action": action.value} | VALID[action] | changes


def step(minutes: float) -> datetime:
    """A moment after the reports the tests make, `minutes` in."""
    return datetime(2026, 7, 20, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)


ADMIN = Actor(id="key_test_admin", name="test admin")
REPORT = CaseReport(category="event:0102", title="Exposed garbage", grid="110101001001001")


async def report(sessions: async_sessionmaker[AsyncSession]) -> str:
    """A manual case, reported; its id."""
    async with sessions() as session, session.begin():
        case = await transitions.report_case(
            session=session, report=REPORT, actor=ADMIN, at=step(0)
        )
        return case.id


async def drive(
    sessions: async_sessionmaker[AsyncSession], case_id: str, actions: list[Action]
) -> None:
    """Take `actions` on the case in order, each at the version it is at, as an admin."""
    for minute, action in enumerate(actions, start=1):
        async with sessions() as session, session.begin():
            case = await get_case(session=session, case_id=case_id)
            assert case is not None
            await transitions.transition(
                session=session,
                case_id=case_id,
                versions=frozenset({case.version}),
                request=TransitionRequest.model_validate(request(action)),
                actor=ADMIN,
                at=step(minute),
            )


async def case_in(sessions: async_sessionmaker[AsyncSession], state: CaseStatus) -> str:
    """A manual case brought to `state` along its path; its id."""
    case_id = await report(sessions)
    await drive(sessions, case_id, PATHS[state])
    return case_id


async def snapshot(sessions: async_sessionmaker[AsyncSession], case_id: str) -> Case:
    """The case with its history, read afresh."""
    async with sessions() as session:
        case = await get_case(session=session, case_id=case_id)
        assert case is not None
        return case


async def outbox(sessions: async_sessionmaker[AsyncSession], case_id: str) -> list[OutboxEvent]:
    """The case's events in order."""
    async with sessions() as session:
        rows = await session.scalars(
            select(OutboxEvent).where(OutboxEvent.case_id == case_id).order_by(OutboxEvent.sequence)
        )
        return list(rows)
