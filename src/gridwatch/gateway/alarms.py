"""The alarm path in one place: the engine, the status policy, and getting alarms into cases.

Readings (the pipeline), time passing (ticks), rule reloads and commissioning dry runs all ask
this service; none of them keeps a policy of its own. The status policy:

- `active` sensors raise cases;
- `commissioning` sensors are evaluated as if live, and their cases are test cases;
- `draft`, `maintenance` and `retired` sensors raise nothing, from readings or from ticks.
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from gridwatch.domain import AlarmEvent, Reading, Sensor, SensorStatus
from gridwatch.domain.backoff import Backoff
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.rules import RuleEngine, RulePack

log = logging.getLogger("gridwatch.alarms")

LIVE_STATUSES: Final = frozenset({SensorStatus.ACTIVE, SensorStatus.COMMISSIONING})
CASE_RETRY_BASE_S: Final = 0.5
CASE_RETRY_MAX_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class RaisedAlarms:
    """The alarm events one reading (or one tick) raised for one sensor, in order."""

    sensor: Sensor
    alarms: Sequence[AlarmEvent]
    # The sensor is being commissioned: its alarms open test cases.
    test: bool = False


class CaseSink(Protocol):
    """Applies a batch of sensors' alarm events to cases, all or nothing."""

    async def __call__(self, batch: Sequence[RaisedAlarms]) -> None:
        """Persist the batch's effect on cases in one transaction, or raise TransientError."""


class TransientError(Exception):
    """The case store is unavailable for now; the same call should be retried."""


def is_test(sensor: Sensor) -> bool:
    """Whether the sensor's alarms open test cases (it is being commissioned)."""
    return sensor.status is SensorStatus.COMMISSIONING


class AlarmService:
    """Owns the rules engine and the retrying way from its alarm events to cases."""

    def __init__(
        self,
        *,
        rules: RulePack,
        registry: SensorRegistry,
        cases: CaseSink,
        metrics: Metrics,
    ) -> None:
        self.engine = RuleEngine(rules, live=LIVE_STATUSES)
        self._registry = registry
        self._cases = cases
        self._metrics = metrics

    def evaluate(self, sensor: Sensor, reading: Reading) -> tuple[AlarmEvent, ...]:
        """The alarm events this reading causes (none for a sensor that is not live)."""
        alarms = tuple(self.engine.evaluate(sensor, reading))
        for alarm in alarms:
            self._metrics.alarms.labels(alarm.transition.value).inc()
            log.info(
                "alarm %s sensor=%s rule=%s severity=%s",
                alarm.transition, alarm.sensor_id, alarm.rule_id, alarm.severity,
            )  # fmt: skip
        return alarms

    def dry_run(self, sensor: Sensor, reading: Reading) -> list[AlarmEvent]:
        """What the reading would raise on a fresh engine as if the sensor were live.

        A fresh engine, so the dry run never touches the live alarm state (commissioning).
        """
        live = sensor if sensor.status in LIVE_STATUSES else _as_active(sensor)
        return RuleEngine(self.engine.rules, live=LIVE_STATUSES).evaluate(live, reading)

    def sensors_changed(self) -> None:
        """The registry changed: the engine drops or updates what it holds of each sensor."""
        self.engine.sync_sensors(self._registry.get)

    async def tick(self, now: datetime) -> None:
        """Let time pass for the engine and apply what fires (deadman, held conditions)."""
        await self.apply_events(self.engine.tick(now))

    def replace_rules(self, rules: RulePack, *, at: datetime) -> list[AlarmEvent]:
        """Swap the rules in; the alarms of removed rules come back cleared (apply them)."""
        return self.engine.replace_rules(rules, at=at)

    async def apply_events(self, events: Sequence[AlarmEvent]) -> None:
        """Apply events not tied to a reading (ticks, reloads), per sensor as registered now."""
        by_sensor: dict[str, list[AlarmEvent]] = defaultdict(list)
        for event in events:
            by_sensor[event.sensor_id].append(event)
        batch: list[RaisedAlarms] = []
        for sensor_id, alarms in by_sensor.items():
            sensor = self._registry.get(sensor_id)
            if sensor is None:
                log.info("alarms of unregistered sensor %s dropped", sensor_id)
                continue
            batch.append(self.raised(sensor, alarms))
        await self.apply(batch)

    @staticmethod
    def raised(sensor: Sensor, alarms: Sequence[AlarmEvent]) -> RaisedAlarms:
        """The sensor's alarms as the case sink takes them (test cases while commissioning)."""
        return RaisedAlarms(sensor, alarms, test=is_test(sensor))

    async def apply(self, batch: Sequence[RaisedAlarms]) -> None:
        """Apply a batch of alarms to cases in one transaction, retrying while the store is out.

        One transaction for the batch, because a commit costs more than the changes in it. A
        batch that fails for another reason (a bug the data trips) is applied reading by
        reading, so only the alarms that cause it are lost, logged and counted, never the
        stream behind them.
        """
        if len(batch) > 1:
            try:
                await self._apply_retrying(batch)
            except Exception:  # noqa: BLE001 - found again below, reading by reading, and logged
                log.info("a batch of %d sensors' alarms failed; applying one by one", len(batch))
            else:
                return
        for raised in batch:
            try:
                await self._apply_retrying([raised])
            except Exception:
                self._metrics.case_failures.inc(len(raised.alarms))
                log.exception(
                    "alarms not applied to cases sensor=%s rules=%s",
                    raised.sensor.id, ",".join(alarm.rule_id for alarm in raised.alarms),
                )  # fmt: skip

    async def _apply_retrying(self, batch: Sequence[RaisedAlarms]) -> None:
        # The caller's messages stay unacknowledged while we wait, so the broker holds the
        # stream behind them: backpressure instead of a lost case.
        backoff = Backoff(base_s=CASE_RETRY_BASE_S, max_s=CASE_RETRY_MAX_S)
        while True:
            try:
                await self._cases(batch)
            except TransientError as err:
                delay = backoff.next_delay()
                log.warning(
                    "case store unavailable (%d sensors; %s); retry %d in %.1fs",
                    len(batch), err, backoff.failures, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
            else:
                return


def _as_active(sensor: Sensor) -> Sensor:
    return sensor.model_copy(update={"status": SensorStatus.ACTIVE})
