"""A case's record of change: history entries and outbox events, in the caller's transaction."""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

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
    """Append a history entry leading to the case's current status."""
    case.history.append(
        CaseHistory(
            at=at,
            actor=actor,
            action=action,
            from_status=from_status.value if from_status else None,
            to_status=case.status,
            note=note,
            data=data,
        )
    )


async def emit_event(
    session: AsyncSession, case: Case, event_type: CaseEventType, at: datetime
) -> CaseEventType:
    """Write the case's next event to the outbox, in the caller's transaction.

    The flush is the case's conditional UPDATE (`WHERE version = ...`): StaleDataError here
    means another writer changed the case since it was read.
    """
    # Counted before the flush, so the case's one UPDATE (or INSERT) carries the sequence too:
    # after it, a second UPDATE per event would follow at commit.
    case.last_sequence += 1
    await session.flush()
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
