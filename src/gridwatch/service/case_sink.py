"""Applies alarm events to cases, one transaction per reading, then wakes the webhook relay."""

import logging
from collections.abc import Callable, Sequence

from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from gridwatch.cases.policy import CasePolicy
from gridwatch.cases.service import CaseChange, apply_alarm
from gridwatch.domain import AlarmEvent, Sensor
from gridwatch.gateway.alarms import TransientError
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

    async def __call__(
        self, sensor: Sensor, alarms: Sequence[AlarmEvent], *, test: bool = False
    ) -> None:
        """Apply every alarm of one reading atomically; connection trouble is transient."""
        try:
            async with self._sessions() as session, session.begin():
                changes: list[CaseChange] = [
                    await apply_alarm(
                        session=session,
                        alarm=alarm,
                        sensor=sensor,
                        test=test,
                        policy=self._policy,
                    )
                    for alarm in alarms
                ]
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
        for change in changes:
            if change.event_type is None:
                continue
            self._metrics.case_events.labels(change.event_type.value).inc()
            log.info(
                "case event %s case=%s sensor=%s", change.event_type, change.case_id, sensor.id
            )
        self._on_committed()
