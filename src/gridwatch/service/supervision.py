"""Supervision (督办) as a long-lived task: checks every case's deadline each interval.

What a pass does to each case is `cases.oversight`'s decision; this task gives it a clock and
a database, one transaction per batch of cases. A database outage skips the pass (logged) and
the next one catches up: the flags depend only on the deadlines and the time.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from gridwatch.cases import oversight
from gridwatch.cases.policy import CasePolicy
from gridwatch.gateway.metrics import Metrics

log = logging.getLogger("gridwatch.supervision")

BATCH_SIZE = 200


class Supervisor:
    """Flags due-soon and overdue cases and escalates them, every `interval_s`."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        policy: CasePolicy,
        interval_s: float,
        on_committed: Callable[[], None],
        metrics: Metrics | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        if interval_s <= 0 or batch_size < 1:
            raise ValueError("interval_s must be positive and batch_size at least 1")
        self._sessions = sessions
        self._policy = policy
        self._interval_s = interval_s
        self._on_committed = on_committed
        self._metrics = metrics
        self._batch_size = batch_size

    async def run(self) -> None:
        """Check the deadlines until cancelled; a failing pass never ends the task."""
        while True:
            try:
                await self.run_pass(datetime.now(UTC))
            except (DBAPIError, OSError, PoolTimeoutError) as err:
                log.warning("supervision pass skipped: database error: %s", err)
            await asyncio.sleep(self._interval_s)

    async def run_pass(self, now: datetime) -> list[oversight.Flagged]:
        """One pass at `now`: every timed case is checked, changes committed batch by batch."""
        flagged: list[oversight.Flagged] = []
        after = ""
        while True:
            async with self._sessions() as session:
                page = await oversight.candidates(
                    session, now=now, after=after, limit=self._batch_size
                )
            if not page:
                break
            after = page[-1].id
            due = [c.id for c in page if oversight.next_step(c, self._policy, now) is not None]
            if due:
                flagged += await self._flag(due, now)
            if len(page) < self._batch_size:
                break
        if flagged:
            self._on_committed()
        return flagged

    async def _flag(self, case_ids: list[str], now: datetime) -> list[oversight.Flagged]:
        try:
            async with self._sessions() as session, session.begin():
                flagged = await oversight.flag(
                    session=session, case_ids=case_ids, policy=self._policy, now=now
                )
        except StaleDataError as err:
            # A person moved one of these cases between our read and our write (SQLite has no
            # row locks): the batch waits for the next pass, decided again on what they left.
            log.info("supervision batch deferred: a case changed concurrently: %s", err)
            return []
        for item in flagged:
            if self._metrics is not None:
                self._metrics.case_events.labels(item.event.value).inc()
            log.info(
                "case %s case=%s level=%d escalated_to=%s",
                item.step, item.case_id, item.level, item.escalated_to,
            )  # fmt: skip
        return flagged
