"""Keeps the gateway's in-memory sensor index equal to the registry tables."""

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.gateway.registry import SensorRegistry
from gridwatch.registry import service

log = logging.getLogger("gridwatch.registry")

POLL_S = 1.0


class RegistrySync:
    """Reloads the index after in-process changes at once, and polls for changes by others."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        registry: SensorRegistry,
        poll_s: float = POLL_S,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._poll_s = poll_s
        self._revision: tuple[int, str | None] | None = None
        self._lock = asyncio.Lock()
        self.on_change = on_change

    async def reload(self) -> None:
        """Replace the index with what the tables hold now."""
        async with self._lock, self._sessions() as session:
            self._revision = await service.revision(session=session)
            sensors = await service.load_all(session=session)
        self._registry.replace(sensors)
        if self.on_change is not None:
            self.on_change()
        log.info("sensor index loaded: %d sensors", len(sensors))

    async def run(self) -> None:
        """Poll the tables' revision until cancelled; a CLI change shows up within a poll."""
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                async with self._sessions() as session:
                    current = await service.revision(session=session)
                if current != self._revision:
                    await self.reload()
            except (SQLAlchemyError, OSError) as err:
                log.warning("sensor index not refreshed: %s", err)
