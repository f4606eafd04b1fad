"""Builders for domain objects used across integration tests."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from gridwatch.domain import AlarmEvent, AlarmTransition, Sensor, Severity
from gridwatch.gateway.alarms import AlarmService, RaisedAlarms
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.rules import Rule, RulePack

T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)


def rain_sensor(sensor_id: str = "RG-1") -> Sensor:
    """An active rain gauge in a Dongcheng grid unit."""
    return Sensor.model_validate(
        {"id": sensor_id, "kind": "rain_gauge", "grid": "110101001001001", "interval_s": 5}
    )


def alarm(
    transition: AlarmTransition,
    severity: Severity = Severity.BLUE,
    *,
    sensor_id: str = "RG-1",
    rule_id: str = "burst",
    seconds: float = 0,
) -> AlarmEvent:
    """An alarm event of the burst rule."""
    return AlarmEvent(
        sensor_id=sensor_id,
        rule_id=rule_id,
        transition=transition,
        severity=severity,
        category="event:0401",
        title=f"Rain at {sensor_id} ({severity})",
        at=T0 + timedelta(seconds=seconds),
        values={"rain_mm": 4.0},
    )


async def _no_case_store(batch: Sequence[RaisedAlarms]) -> None:
    raise AssertionError(f"this test has no case store; got {batch}")


def alarm_service(
    rules: Sequence[Rule] = (), registry: SensorRegistry | None = None
) -> AlarmService:
    """An alarm service for API tests: the rules in force and dry runs, no case store."""
    return AlarmService(
        rules=RulePack(tuple(rules)),
        registry=registry or SensorRegistry(),
        cases=_no_case_store,
        metrics=Metrics(),
    )
