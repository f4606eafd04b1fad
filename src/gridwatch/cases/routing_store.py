"""The routing table stored in the database: one row, replaced whole, versioned.

The row exists from the migration on, with no table (version 0). A change is one conditional
`UPDATE … WHERE version IN (…)` as the first statement of its transaction, so of two writers
at one version exactly one wins (PostgreSQL: the row lock; SQLite: the write lock, taken by
the UPDATE before it reads) and the other gets `StaleRoutingError`. Dropping the table keeps
the row and bumps the version, so a version never comes back with different contents.
Services never commit: the caller owns the transaction.
"""

from collections.abc import Set
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Integer, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gridwatch.cases.routing import RoutingInForce, RoutingTable, StoredRouting, build_routing
from gridwatch.gateway.db import Base, UTCDateTime

ROW_ID = 1


class RoutingRow(Base):
    """The stored routing table: the document as GET shows it, or NULL (the file's is in force)."""

    __tablename__ = "routing_table"
    __table_args__ = (CheckConstraint(f"id = {ROW_ID}", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(64))


class StaleRoutingError(Exception):
    """The stored table is not at the version the caller read; nothing was changed."""

    def __init__(self, current: int) -> None:
        self.current = current
        super().__init__(f"the routing table is at version {current}, not the one given")


async def read(*, session: AsyncSession) -> StoredRouting:
    """What the database holds; RoutingError if a stored table no longer validates."""
    row = await session.get(RoutingRow, ROW_ID, populate_existing=True)
    if row is None:
        return StoredRouting(table=None)
    table = None
    if row.document is not None:
        source = f"the routing table stored in the database (version {row.version})"
        table = build_routing(row.document, source=source)
    return StoredRouting(
        table=table, version=row.version, updated_at=row.updated_at, updated_by=row.updated_by
    )


async def stored_version(*, session: AsyncSession) -> int:
    """The stored version alone: what a poll compares, one indexed read."""
    version = await session.scalar(select(RoutingRow.version).where(RoutingRow.id == ROW_ID))
    return version or 0


async def save(
    *,
    session: AsyncSession,
    table: RoutingTable | None,
    versions: Set[int] | None,
    actor: str,
    at: datetime,
) -> StoredRouting:
    """Store `table` (None: drop the stored one) if the stored version is one of `versions`.

    `versions` None writes whatever version is stored (`If-Match: *`). Dropping when nothing
    is stored changes nothing. Raises StaleRoutingError.
    """
    document = None if table is None else table.model_dump(mode="json", exclude_none=True)
    actor = actor[:64]
    change = (
        update(RoutingRow)
        .where(RoutingRow.id == ROW_ID)
        .values(version=RoutingRow.version + 1, document=document, updated_at=at, updated_by=actor)
        .returning(RoutingRow.version)
        .execution_options(synchronize_session=False)
    )
    if versions is not None:
        change = change.where(RoutingRow.version.in_(versions))
    if table is None:
        change = change.where(RoutingRow.document.is_not(None))
    version = (await session.execute(change)).scalar_one_or_none()
    if version is not None:
        return StoredRouting(table=table, version=version, updated_at=at, updated_by=actor)
    row = await session.get(RoutingRow, ROW_ID, populate_existing=True)
    current = 0 if row is None else row.version
    if versions is not None and current not in versions:
        raise StaleRoutingError(current)
    if table is None:
        # Nothing stored, so nothing to drop: the file's table is in force already.
        if row is None:
            return StoredRouting(table=None)
        return StoredRouting(
            table=None, version=current, updated_at=row.updated_at, updated_by=row.updated_by
        )
    # Only a missing row gets here (the migration creates it; someone removed it).
    session.add(
        RoutingRow(id=ROW_ID, version=1, document=document, updated_at=at, updated_by=actor)
    )
    await session.flush()
    return StoredRouting(table=table, version=1, updated_at=at, updated_by=actor)


async def refresh(*, session: AsyncSession, routing: RoutingInForce) -> bool:
    """Put the stored table in force if it is newer than `routing`'s; RoutingError if unusable."""
    if await stored_version(session=session) <= routing.state.version:
        return False
    return routing.adopt(await read(session=session))
