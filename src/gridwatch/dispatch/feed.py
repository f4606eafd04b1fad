"""Wakes long-polling consumers of the dispatch queue when new events have positions.

One `DispatchFeed` per process. `notify` (this process committed case events) makes the next
pass number them at once; while anyone waits, a pass also runs every `poll_interval_s`, which
is how events committed by other processes (or the CLI) are found. However many requests
wait, one pass runs at a time and its result is shared: waiters hold no database connection.
"""

import asyncio
import logging
import random
import time
from typing import Final

from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.dispatch.queue import sequence_pending
from gridwatch.domain.backoff import Backoff

log = logging.getLogger("gridwatch.dispatch")

POLL_INTERVAL_S: Final = 0.025
# Without waiters the service's own pass numbers new events this often (and at once on notify).
IDLE_INTERVAL_S: Final = 1.0
DATABASE_RETRY_MAX_S: Final = 15.0
_DATABASE_DOWN: Final = (DBAPIError, InterfaceError, PoolTimeoutError, OSError)


class DispatchFeed:
    """The queue's horizon (last position given) in this process, and waiting for it to move."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        poll_interval_s: float = POLL_INTERVAL_S,
        idle_interval_s: float = IDLE_INTERVAL_S,
    ) -> None:
        self._sessions = sessions
        self._poll_interval_s = poll_interval_s
        self._idle_interval_s = idle_interval_s
        self._horizon = 0
        self._synced_at = -float("inf")
        self._dirty = True
        self._closed = False
        self._lock = asyncio.Lock()
        # Replaced each time it is set, so every waiter wakes once per change.
        self._changed = asyncio.Event()

    @property
    def horizon(self) -> int:
        """The last position known to be committed."""
        return self._horizon

    @property
    def closed(self) -> bool:
        """Whether the service is stopping: waiters return what they have."""
        return self._closed

    def notify(self) -> None:
        """This process committed case events: number them now, not at the next poll."""
        self._dirty = True
        self._wake()

    def close(self) -> None:
        """Release every waiter (the service is stopping; they answer with what they have)."""
        self._closed = True
        self._wake()

    async def sync(self, *, max_age_s: float = 0.0) -> int:
        """Number what is committed and unnumbered, unless a pass ran within `max_age_s`.

        Returns the horizon. Concurrent callers share one pass.
        """
        async with self._lock:
            if not self._dirty and time.monotonic() - self._synced_at <= max_age_s:
                return self._horizon
            # Cleared first: a notify during the pass asks for another one.
            self._dirty = False
            try:
                horizon, waiting = await sequence_pending(self._sessions)
            except BaseException:
                self._dirty = True
                raise
            self._dirty = self._dirty or waiting
            self._synced_at = time.monotonic()
            if horizon > self._horizon:
                self._horizon = horizon
                self._wake()
            return self._horizon

    async def wait_beyond(self, position: int, timeout_s: float) -> int:
        """Wait until the horizon passes `position`, at most `timeout_s`; returns the horizon."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            horizon = await self.sync(max_age_s=self._poll_interval_s)
            remaining = deadline - loop.time()
            if horizon > position or remaining <= 0 or self._closed:
                return horizon
            changed = self._changed
            try:
                async with asyncio.timeout(min(remaining, self._poll_interval_s)):
                    await changed.wait()
            except TimeoutError:
                pass

    async def run(self) -> None:
        """Number new events as they commit (on notify, else every idle interval) until cancelled.

        Consumers do not depend on it (their requests number what they need), but it keeps
        positions close to commit order while nobody pulls. A database outage pauses it.
        """
        rng = random.Random()  # noqa: S311 - jitter, not cryptography
        outage = Backoff(base_s=self._idle_interval_s, max_s=DATABASE_RETRY_MAX_S, rng=rng)
        while True:
            try:
                await self.sync(max_age_s=self._idle_interval_s)
            except _DATABASE_DOWN as err:
                delay = outage.next_delay()
                log.warning(
                    "dispatch sequencer paused: database unavailable (%s); retry in %.1fs",
                    getattr(err, "orig", None) or err, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                continue
            outage.reset()
            if self._dirty:
                continue  # notified during the pass, or a backlog left: the next pass at once
            changed = self._changed
            try:
                async with asyncio.timeout(self._idle_interval_s):
                    await changed.wait()
            except TimeoutError:
                pass

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
