"""A case's record of change: history entries and outbox events, in the caller's transaction."""

from datetime import datetime
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import object_session

from gridwatch.cases.events import CaseEventType, cloud_event, new_event_id
from gridwatch.cases.models import Case, CaseHistory, CaseStatus, CaseSummary, OutboxEvent


def record(
    case: Case,
    *,
    at: datetime,
    actor: str,
    action: str,
    from_status: CaseStatus | None,
    note: str,
    data: dict[str, Any],
) -> None:
    """Append a history entry leading to the case's current status.

    Where the case was read without its history (the alarm path, which never needs it), the
    entry is added by itself: loading a long history to append one entry is what made each
    alarm cost more as its case aged.
    """
    entry = CaseHistory(
        at=at,
        actor=actor,
        action=action,
        from_status=from_status.value if from_status else None,
        to_status=case.status,
        note=note,
        data=data,
    )
    if "history" in inspect(case).unloaded:
        entry.case_id = case.id
        session = object_session(case)
        if session is None:
            raise ValueError(f"case {case.id} is detached and its history not loaded")
        session.add(entry)
    else:
        case.history.append(entry)


def emit_event(
    session: AsyncSession, case: Case, event_type: CaseEventType, at: datetime
) -> CaseEventType:
    """Add the case's next event to the outbox, in the caller's transaction.

    Nothing is written yet: the case's one conditional UPDATE (`WHERE version = ...`), its
    history and its events go at the next flush, together with a whole batch's. A caller that
    must know at once whether another writer changed the case since it was read flushes
    itself (StaleDataError).
    """
    case.last_sequence += 1
    event_id = new_event_id()
    body = cloud_event(
        event_id=event_id,
        event_type=event_type,
        case=CaseSummary.model_validate(case),
        sequence=case.last_sequence,
        time=at,
    )
    session.add(
        OutboxEvent(
            id=event_id,
            case_id=case.id,
            sequence=case.last_sequence,
            type=event_type.value,
            created_at=at,
            body=body,
            fanned_out_at=None,
        )
    )
    return event_type
