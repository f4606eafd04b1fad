"""Receipts from the dispatch system (accepted, arrived, handled), each applied once per id.

A receipt drives the case as the dispatcher would: `accepted` is the loop's `accept`,
`handled` its `feedback`. `arrived` has no state of its own in the loop; the handling deadline
is "on site or handled" (`domain.deadlines`: a red entrapment must be reached in 30 minutes),
so arriving meets it: the arrival is recorded as an `arrived` history entry (on time or not)
and the case's deadline clock stops until a rework or an approved postponement sets a new one.

A receipt is stored under (source, receipt id) in the same transaction as its change, with
the answer it got, so the same receipt again changes nothing and gets the same answer. One
the case's state refuses is not stored: nothing happened, and it may be sent again later.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import JSON, ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.exc import StaleDataError

from gridwatch.cases import lifecycle, timing
from gridwatch.cases.errors import CaseNotFoundError, VersionMismatchError
from gridwatch.cases.events import CaseEventType
from gridwatch.cases.journal import emit_event, record
from gridwatch.cases.lifecycle import Action, TransitionRefusedError
from gridwatch.cases.models import Case, CaseStatus, OutboxEvent
from gridwatch.cases.policy import CasePolicy
from gridwatch.cases.requests import EvidenceLinks, Note, TransitionRequest
from gridwatch.cases.service import get_case
from gridwatch.cases.transitions import Actor, transition
from gridwatch.gateway.db import Base, UTCDateTime

# Clocks differ: a receipt stamped a little ahead of ours is taken as now, not refused.
CLOCK_SKEW: Final = timedelta(minutes=5)


class ReceiptType(StrEnum):
    """What the dispatch system reports about a case."""

    ACCEPTED = "accepted"
    ARRIVED = "arrived"
    HANDLED = "handled"


# The loop's action each receipt takes; arrival is recorded, not a transition.
ACTIONS: Mapping[ReceiptType, Action] = {
    ReceiptType.ACCEPTED: Action.ACCEPT,
    ReceiptType.HANDLED: Action.FEEDBACK,
}
# A unit is on site only with a case it has accepted (a postponement pending or not).
ARRIVAL_STATES: Final = (CaseStatus.ACCEPTED, CaseStatus.POSTPONED)


def accepted_in(receipt_type: ReceiptType) -> tuple[CaseStatus, ...]:
    """The case states a receipt of `receipt_type` is accepted in."""
    action = ACTIONS.get(receipt_type)
    if action is None:
        return ARRIVAL_STATES
    return tuple(state for state, act in lifecycle.TRANSITIONS if act is action)


class CaseReceipt(Base):
    """A receipt applied to a case, with the answer it got; unique per (source, receipt id)."""

    __tablename__ = "case_receipts"

    # The API key that posted it: receipt ids are the dispatch system's, unique only there.
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    receipt_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    # Of the case and the body: a receipt id sent again with other contents is a conflict.
    fingerprint: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


class ReceiptRequest(BaseModel):
    """A receipt as the dispatch system posts it."""

    model_config = ConfigDict(extra="forbid")

    receipt_id: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[!-~]+$",
        description="The dispatch system's own id for this receipt (printable ASCII, no spaces).",
    )
    type: ReceiptType
    note: Note = ""
    evidence: EvidenceLinks = Field(default_factory=list)
    at: AwareDatetime | None = Field(
        default=None, description="When it happened, as the dispatch system saw it; default now."
    )

    @field_validator("at")
    @classmethod
    def _not_ahead(cls, at: datetime | None) -> datetime | None:
        if at is not None and at > datetime.now(UTC) + CLOCK_SKEW:
            raise ValueError("must not be in the future")
        return at

    def fingerprint(self, case_id: str) -> str:
        """A digest of what the receipt says about which case."""
        said = {"case_id": case_id} | self.model_dump(mode="json", exclude={"receipt_id"})
        return hashlib.sha256(json.dumps(said, sort_keys=True).encode()).hexdigest()


class ReceiptResult(BaseModel):
    """What a receipt did: the case's status and version after it, and the event it emitted."""

    receipt_id: str
    type: ReceiptType
    case_id: str
    at: datetime
    received_at: datetime
    action: str = Field(description="accept, feedback, or arrived (recorded in the history).")
    status: CaseStatus
    version: int
    event_id: str = Field(description="The case event the receipt caused (pull and webhooks).")
    on_time: bool | None = Field(
        default=None, description="arrived: whether before the deadline (null: none was set)."
    )


@dataclass(frozen=True, slots=True)
class Applied:
    """A receipt's answer, and whether it is the stored answer to an earlier post."""

    result: ReceiptResult
    replayed: bool


class ReceiptConflictError(Exception):
    """The receipt id was used before for another receipt (other case, type or contents)."""

    def __init__(self, receipt_id: str, case_id: str) -> None:
        self.receipt_id = receipt_id
        super().__init__(
            f"receipt {receipt_id!r} was posted before with other contents (to case {case_id});"
            " use a new receipt id"
        )


class ReceiptRefusedError(Exception):
    """The case's state does not take the receipt now."""

    def __init__(self, *, state: CaseStatus, receipt_type: ReceiptType, reason: str) -> None:
        self.state = state
        self.receipt_type = receipt_type
        self.accepted_in = accepted_in(receipt_type)
        self.reason = reason
        super().__init__(reason)


async def apply_receipt(
    *,
    session: AsyncSession,
    case_id: str,
    receipt: ReceiptRequest,
    source: str,
    actor: Actor,
    now: datetime,
    include_test: bool = False,
    policy: CasePolicy | None = None,
) -> Applied:
    """Apply the receipt to the case in the caller's transaction, or answer as the first time.

    Raises CaseNotFoundError, ReceiptConflictError, ReceiptRefusedError, InvalidRequestError
    (`handled` without a note) or VersionMismatchError (another writer changed the case
    meanwhile: try again). Two posts of one receipt at once: the second one's insert fails
    (IntegrityError) and, tried again, finds the first one's answer.
    """
    fingerprint = receipt.fingerprint(case_id)
    stored = await session.get(CaseReceipt, (source, receipt.receipt_id))
    if stored is not None:
        if stored.fingerprint != fingerprint:
            raise ReceiptConflictError(receipt.receipt_id, stored.case_id)
        return Applied(ReceiptResult.model_validate(stored.result), replayed=True)
    case = await get_case(session=session, case_id=case_id)
    if case is None or (case.drill and not include_test):
        raise CaseNotFoundError(case_id)
    at = min(receipt.at or now, now).astimezone(UTC)
    on_time: bool | None = None
    action = ACTIONS.get(receipt.type)
    if action is None:
        on_time = await _arrive(session, case, receipt=receipt, at=at, actor=actor)
    else:
        request = TransitionRequest(action=action, note=receipt.note, evidence=receipt.evidence)
        try:
            case = await transition(
                session=session,
                case_id=case_id,
                versions=frozenset({case.version}),
                request=request,
                actor=actor,
                at=at,
                include_test=include_test,
                policy=policy,
            )
        except TransitionRefusedError as err:
            raise ReceiptRefusedError(
                state=err.state, receipt_type=receipt.type, reason=str(err)
            ) from err
        entry = case.history[-1]
        entry.data = entry.data | {"receipt_id": receipt.receipt_id}
    event_id = await session.scalar(
        select(OutboxEvent.id).where(
            OutboxEvent.case_id == case.id, OutboxEvent.sequence == case.last_sequence
        )
    )
    assert event_id is not None  # the change above emitted it
    result = ReceiptResult(
        receipt_id=receipt.receipt_id,
        type=receipt.type,
        case_id=case.id,
        at=at,
        received_at=now,
        action=lifecycle.ARRIVED if action is None else action.value,
        status=CaseStatus(case.status),
        version=case.version,
        event_id=event_id,
        on_time=on_time,
    )
    session.add(
        CaseReceipt(
            source=source,
            receipt_id=receipt.receipt_id,
            case_id=case.id,
            type=receipt.type.value,
            fingerprint=fingerprint,
            at=at,
            received_at=now,
            result=result.model_dump(mode="json"),
        )
    )
    await session.flush()
    return Applied(result, replayed=False)


async def _arrive(
    session: AsyncSession, case: Case, *, receipt: ReceiptRequest, at: datetime, actor: Actor
) -> bool | None:
    # On site: the handling deadline is met (or was missed); either way its clock stops.
    state = CaseStatus(case.status)
    if state not in ARRIVAL_STATES:
        raise ReceiptRefusedError(
            state=state,
            receipt_type=receipt.type,
            reason=f"arrived is taken for an accepted case, and this one is {state}",
        )
    due = case.due_at
    on_time = None if due is None else at <= due
    if due is not None:
        timing.end_deadlines(case)
    version = case.version
    case.version += 1
    case.updated_at = max(case.updated_at, at)
    links = [str(link) for link in receipt.evidence]
    record(
        case,
        at=at,
        actor=actor.id,
        action=lifecycle.ARRIVED,
        from_status=state,
        note=receipt.note.strip(),
        data={
            "on_time": on_time,
            "due_at": due.isoformat() if due is not None else None,
            "receipt_id": receipt.receipt_id,
        }
        | ({"evidence": links} if links else {})
        | actor.data(),
    )
    emit_event(session, case, CaseEventType.UPDATED, at)
    try:
        await session.flush()
    except StaleDataError as err:
        raise VersionMismatchError(
            case_id=case.id, expected=frozenset({version}), current=None
        ) from err
    return on_time
