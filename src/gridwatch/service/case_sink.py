"""Applies alarm events to cases, one transaction per batch, then wakes the webhook relay."""

import logging
from collections.abc import Callable, Sequence

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from gridwatch.cases.policy import CasePolicy
from gridwatch.cases.service import apply_alarms
from gridwatch.gateway.alarms import RaisedAlarms, TransientError
from gridwatch.gateway.metrics import Metrics

log = logging.getLogger("gridwatch.cases")


class DatabaseCaseSink:
    """The pipeline's CaseSink backed by the case tables and the outbox."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        on_committed: Callable[[], None],
        policy: CasePolicy | None = None,
    ) -> None:
        self._sessions = sessions
        self._policy = policy
        self._metrics = metrics
        self._on_committed = on_committed

    async def __call__(self, batch: Sequence[RaisedAlarms]) -> None:
        """Apply the batch's alarms atomically; connection trouble and races are transient."""
        try:
            async with self._sessions() as session, session.begin():
                changes = await apply_alarms(session=session, batch=batch, policy=self._policy)
        except (OperationalError, InterfaceError, OSError) as err:
            raise TransientError(str(err)) from err
        except IntegrityError as err:
            # Two writers opened the case at once (no row existed to lock): the loser's insert
            # hits the one-open-case constraint. Retried, it finds the winner's case.
            if "open_fingerprint" not in str(err.orig):
                raise
            raise TransientError(f"case opened concurrently: {err.orig}") from err
        except StaleDataError as err:
            # A person changed the case between our read and our write (SQLite has no row
            # locks): read it again and apply the alarm to what they left.
            raise TransientError(f"case changed concurrently: {err}") from err
        except DBAPIError as err:
            # PostgreSQL broke a lock cycle (40P01) or a serialization conflict (40001) by
            # rolling us back: the batch is whole again, and a retry goes through.
            if not str(getattr(err.orig, "sqlstate", "")).startswith("40"):
                raise
            raise TransientError(f"transaction rolled back: {err.orig}") from err
        for change in changes:
            if change.event_type is None:
                continue
            self._metrics.case_events.labels(change.event_type.value).inc()
            log.info(
                "case event %s case=%s sensor=%s",
                change.event_type, change.case_id, change.sensor_id,
            )  # fmt: skip
        self._on_committed()
