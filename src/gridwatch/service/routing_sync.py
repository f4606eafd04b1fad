"""Keeps this process's routing table in force equal to the one stored in the database.

A change through this process's API is in force at once (the route adopts what it stored);
a change by another process or the CLI is picked up by polling the stored version, one
indexed read every `poll_s`.
"""

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.cases import routing_store
from gridwatch.cases.routing import RoutingError, RoutingInForce

log = logging.getLogger("gridwatch.routing")

POLL_S = 2.0


class RoutingSync:
    """Loads the stored table at start and polls for changes made elsewhere."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        routing: RoutingInForce,
        poll_s: float = POLL_S,
    ) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be positive")
        self._sessions = sessions
        self._routing = routing
        self._poll_s = poll_s
        self._refused: str | None = None

    async def refresh(self) -> bool:
        """Adopt the stored table if it is newer; RoutingError if it no longer validates."""
        async with self._sessions() as session:
            changed = await routing_store.refresh(session=session, routing=self._routing)
        if changed:
            state = self._routing.state
            routes = 0 if state.table is None else len(state.table.routes)
            log.info(
                "routing table in force: source %s, version %d, %d routes, by %s",
                state.source, state.version, routes, state.updated_by,
            )  # fmt: skip
        return changed

    async def run(self) -> None:
        """Poll until cancelled; a database outage or a refused table keeps the one in force."""
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.refresh()
            except (SQLAlchemyError, OSError) as err:
                log.warning("routing table not refreshed: %s", err)
            except RoutingError as err:
                # Stored by a gridwatch whose checks differ from ours; said once, not per poll.
                if str(err) != self._refused:
                    log.error("stored routing table refused, the one in force stays: %s", err)  # noqa: TRY400
                self._refused = str(err)
