"""Case tables and their read schemas."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gridwatch.domain import Severity
from gridwatch.gateway.db import Base, UTCDateTime


class CaseStatus(StrEnum):
    """Where a case stands in the six-step closed loop."""

    REPORTED = "reported"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    HANDLED = "handled"
    VERIFIED = "verified"
    CLOSED = "closed"
    EVALUATED = "evaluated"
    POSTPONED = "postponed"
    CANCELLED = "cancelled"


class Case(Base):
    """A work order; `open_fingerprint` is unique, so one (sensor, rule) has one open case."""

    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    severity: Mapped[str] = mapped_column(String(8), index=True)
    category: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300))
    sensor_id: Mapped[str | None] = mapped_column(String(64), index=True)
    grid: Mapped[str | None] = mapped_column(String(15), index=True)
    unit: Mapped[str | None] = mapped_column(String(64))
    rule_id: Mapped[str | None] = mapped_column(String(64))
    # Set while the case is open and cleared when it closes; NULLs do not collide in a
    # unique index on SQLite or PostgreSQL, so closed cases never block a new one.
    open_fingerprint: Mapped[str | None] = mapped_column(String(140), unique=True)
    # The open key kept after closing, so a recurring alarm finds the case it reopens.
    case_key: Mapped[str | None] = mapped_column(String(140), index=True)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    alarm_active: Mapped[bool] = mapped_column(default=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The current stage's deadline, and when its clock started (the due-soon warning and
    # supervision's further escalations are measured against the time it allows).
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    due_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    overdue: Mapped[bool] = mapped_column(default=False)
    due_soon: Mapped[bool] = mapped_column(default=False, server_default=false())
    # How far up the grid hierarchy supervision (督办) has taken the case: 0 none, then one
    # level per escalation (community, street, district for a unit-grid case).
    supervision_level: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Times supervision found the case overdue; never reset (the flags above are, at every
    # deadline move), so the KPIs know a closed case ran late without reading its history.
    overdue_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Kept for the KPIs once the deadlines have moved on: timely dispatch compares the first
    # dispatch with the first dispatch deadline.
    dispatch_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Auto-dispatch accuracy: cases the routing table dispatched, and how often people moved
    # them to another unit since.
    auto_dispatched: Mapped[bool] = mapped_column(default=False, server_default=false())
    reassignments: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    drill: Mapped[bool] = mapped_column(default=False)
    # Device health (offline, stuck, battery, clock): for maintenance teams, not the alarm board.
    maintenance: Mapped[bool] = mapped_column(default=False, server_default=false(), index=True)
    # A manual report's words and where it is (a sensor case's place is its sensor's).
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    location: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # When the case last left the open set (closed or cancelled); bounds recurrence reopening.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The deadline a pending postponement asks for, until an officer decides.
    requested_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rework_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    reopen_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    score: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    # Every flush of a case is `UPDATE ... WHERE id = :id AND version = :v` with the version
    # it was read at (StaleDataError when another writer got there first); the code sets the
    # new version itself, so an alarm repeat and a transition both bump it by exactly one.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012

    history: Mapped[list["CaseHistory"]] = relationship(
        back_populates="case",
        order_by="CaseHistory.id",
        cascade="all, delete-orphan",
        # History is loaded only where asked for (selectinload); an implicit lazy load in
        # async code would fail obscurely, so make it fail loudly instead.
        lazy="raise",
    )


class CaseHistory(Base):
    """One recorded transition or alarm update of a case."""

    __tablename__ = "case_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    case: Mapped[Case] = relationship(back_populates="history")


def reported_case(
    *, id: str, severity: str, category: str, kind: str, title: str, at: datetime, **fields: Any
) -> Case:
    """A new case as reported: no deadline, no dispatch, every counter at its start.

    Column defaults apply only at INSERT, and the loop reads and counts these before the
    flush; so they are set here, in one place, and `fields` gives the rest.
    """
    start: dict[str, Any] = {
        "status": CaseStatus.REPORTED.value, "sensor_id": None, "grid": None, "unit": None,
        "rule_id": None, "open_fingerprint": None, "case_key": None, "occurrences": 1,
        "alarm_active": False, "due_at": None, "due_since": None, "overdue": False,
        "due_soon": False, "supervision_level": 0, "overdue_count": 0, "dispatch_due_at": None,
        "dispatched_at": None, "handled_at": None, "auto_dispatched": False, "reassignments": 0,
        "drill": False, "maintenance": False, "version": 1, "last_sequence": 0, "evidence": {},
        "description": "", "location": None, "closed_at": None, "requested_due_at": None,
        "rework_count": 0, "reopen_count": 0, "score": None,
    }  # fmt: skip
    return Case(
        **(start | fields),
        id=id, severity=severity, category=category, kind=kind, title=title,
        opened_at=at, updated_at=at, last_seen_at=at, history=[],
    )  # fmt: skip


class OutboxEvent(Base):
    """A case event, written in the same transaction as the case change it describes."""

    __tablename__ = "outbox_events"
    __table_args__ = (UniqueConstraint("case_id", "sequence"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    sequence: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Set once the dispatcher has created a delivery per matching subscription.
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)

    # Never navigated: it tells the unit of work that a new case's INSERT goes before its
    # events', so a case and its events are written in one flush at commit (see emit_event).
    case: Mapped[Case] = relationship(lazy="raise", viewonly=False)


class HistoryRead(BaseModel):
    """A history entry as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str
    note: str
    data: dict[str, Any]


class CaseSummary(BaseModel):
    """The case JSON shape of DESIGN.md, without its history."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    status: CaseStatus
    severity: Severity
    category: str
    kind: str
    title: str
    sensor_id: str | None
    grid: str | None
    unit: str | None
    rule_id: str | None
    occurrences: int
    alarm_active: bool
    opened_at: datetime
    updated_at: datetime
    last_seen_at: datetime
    due_at: datetime | None
    due_since: datetime | None
    overdue: bool
    due_soon: bool
    supervision_level: int
    overdue_count: int
    dispatch_due_at: datetime | None
    dispatched_at: datetime | None
    handled_at: datetime | None
    auto_dispatched: bool
    reassignments: int
    drill: bool
    maintenance: bool
    version: int
    evidence: dict[str, Any]
    description: str
    location: dict[str, Any] | None
    closed_at: datetime | None
    requested_due_at: datetime | None
    rework_count: int
    reopen_count: int
    score: int | None


class CaseRead(CaseSummary):
    """A case with every recorded transition."""

    history: list[HistoryRead]
