"""The dispatch queue: every outbox event at one position of a total order, read by cursor.

An autoincrement assigned at INSERT is not commit order: with two writers, position 8 can
commit before position 7, and a consumer that has read 8 never sees 7. So positions are given
*after* commit, by `sequence_pending`: under the one lock of `dispatch_sequencer` it numbers
the events that are committed and not yet numbered, and commits the numbers together with the
new `last_position`. Numbering passes follow one another, so every position a reader can see
belongs to a prefix 1..N that nothing is ever inserted into.

Each outbox insert enqueues its event unnumbered through a database trigger (migration
0011), so every writer is covered without knowing about the queue, and the outbox rows are
never locked or changed here (the relay locks them while it fans them out).
"""

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    exists,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from gridwatch.cases.models import OutboxEvent
from gridwatch.gateway.db import Base

SEQUENCE_BATCH: Final = 1000
# Batches per pass: a backlog (the outbox of an upgraded installation) is numbered over
# several passes, so a request waiting on one is answered with the first ones.
SEQUENCE_BATCHES: Final = 10
_CURSOR_PREFIX: Final = "gwq1:"
# SQLite gives an autoincrementing rowid only to a column declared exactly INTEGER.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class QueueEntry(Base):
    """An outbox event in the queue: `position` is None until the sequencer numbers it."""

    __tablename__ = "dispatch_queue"

    # Insert order (the trigger's): only used to number a pass's events in a stable order.
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(
        ForeignKey("outbox_events.id", ondelete="CASCADE"), unique=True
    )
    position: Mapped[int | None] = mapped_column(BigInteger, unique=True)


class QueueClock(Base):
    """The sequencer's one row: the last position given, and the lock numbering takes."""

    __tablename__ = "dispatch_sequencer"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_position: Mapped[int] = mapped_column(BigInteger)


class CursorError(ValueError):
    """A cursor this queue did not hand out."""


def encode_cursor(position: int) -> str:
    """The opaque cursor of a queue position."""
    raw = f"{_CURSOR_PREFIX}{position}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor stands for; CursorError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise CursorError(f"{cursor!r} is not a cursor of this queue") from err
    number = raw.removeprefix(_CURSOR_PREFIX)
    if number == raw or not (number.isascii() and number.isdigit()) or len(number) > 18:
        raise CursorError(f"{cursor!r} is not a cursor of this queue")
    return int(number)


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One event at its position: the CloudEvent body exactly as the webhooks send it."""

    position: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class QueuePage:
    """Events after a position, and where the next read starts."""

    events: list[QueuedEvent]
    # Past every event read, and past the events the filter left out up to `upto` when the
    # page was not full: a filtered consumer does not read the same skipped events again.
    next_position: int
    more: bool


async def queue_state(session: AsyncSession) -> tuple[int, bool]:
    """The last position given, and whether committed events wait for a position."""
    waiting = exists().where(QueueEntry.position.is_(None))
    row = (await session.execute(select(QueueClock.last_position, waiting))).one()
    return int(row[0]), bool(row[1])


async def sequence_pending(
    sessions: async_sessionmaker[AsyncSession],
    *,
    batch: int = SEQUENCE_BATCH,
    max_batches: int = SEQUENCE_BATCHES,
) -> tuple[int, bool]:
    """Number committed, unnumbered events after the last position, oldest enqueued first.

    Returns the last position and whether events still wait (more than `max_batches` of
    `batch` did). Read-only when nothing waits. Otherwise one transaction per batch
    whose first statement locks the sequencer's row (PostgreSQL: another sequencer waits and
    then reads the position this one committed; SQLite: the write lock), so passes never
    overlap and each one's positions follow the last one's.
    """
    async with sessions() as session:
        last, waiting = await queue_state(session)
    for _ in range(max_batches):
        if not waiting:
            break
        async with sessions() as session, session.begin():
            last = int(
                await session.scalar(
                    update(QueueClock)
                    .where(QueueClock.id == 1)
                    .values(last_position=QueueClock.last_position)
                    .returning(QueueClock.last_position)
                )
                or 0
            )
            rows = (
                await session.execute(
                    select(QueueEntry.id, OutboxEvent.case_id, OutboxEvent.sequence)
                    .join(OutboxEvent, OutboxEvent.id == QueueEntry.event_id)
                    .where(QueueEntry.position.is_(None))
                    .order_by(QueueEntry.id)
                    .limit(batch)
                )
            ).all()
            waiting = len(rows) == batch
            if not rows:
                break
            numbered = number_in_case_order(
                [(row.id, row.case_id, row.sequence) for row in rows], after=last
            )
            await session.execute(
                update(QueueEntry),
                [{"id": entry_id, "position": position} for entry_id, position in numbered],
            )
            last += len(numbered)
            await session.execute(
                update(QueueClock).where(QueueClock.id == 1).values(last_position=last)
            )
    return last, waiting


def number_in_case_order(
    entries: Sequence[tuple[int, str, int]], *, after: int
) -> list[tuple[int, int]]:
    """Positions after `after` for (entry id, case id, case sequence), in the order given.

    Each case's events take the positions its entries fall on, in the order of their case
    sequence: a case's events are numbered in its own order whatever order they were
    enqueued in. Returns (entry id, position) pairs.
    """
    slots: dict[str, list[int]] = {}
    events: dict[str, list[tuple[int, int]]] = {}
    for index, (entry_id, case_id, sequence) in enumerate(entries):
        slots.setdefault(case_id, []).append(after + 1 + index)
        events.setdefault(case_id, []).append((sequence, entry_id))
    numbered = [
        (entry_id, position)
        for case_id, positions in slots.items()
        for position, (_, entry_id) in zip(positions, sorted(events[case_id]), strict=True)
    ]
    return sorted(numbered, key=lambda pair: pair[1])


async def read_page(
    session: AsyncSession,
    *,
    after: int,
    upto: int,
    limit: int,
    types: Sequence[str] = (),
) -> QueuePage:
    """Up to `limit` events in (after, upto], in position order, of `types` (empty: all).

    `upto` must be a position already committed (a `last_position` read before): everything
    up to it is numbered and visible, so a page never ends before a gap that fills later.
    """
    statement = (
        select(QueueEntry.position, OutboxEvent.body)
        .join(OutboxEvent, OutboxEvent.id == QueueEntry.event_id)
        .where(QueueEntry.position > after, QueueEntry.position <= upto)
        .order_by(QueueEntry.position)
        .limit(limit)
    )
    if types:
        statement = statement.where(OutboxEvent.type.in_(list(types)))
    rows = (await session.execute(statement)).all()
    events = [QueuedEvent(position=int(row.position), body=row.body) for row in rows]
    full = len(events) == limit
    next_position = events[-1].position if full else max(upto, after)
    return QueuePage(events=events, next_position=next_position, more=next_position < upto)
