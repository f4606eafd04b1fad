"""Builders for domain objects used across integration tests."""

from datetime import UTC, datetime, timedelta

from gridwatch.domain import AlarmEvent, AlarmTransition, Sensor, Severity

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
