"""Builders shared by the rule tests: sensors, readings, engines from YAML text."""

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gridwatch.domain import AlarmEvent, Channel, Reading, Sensor, Value
from gridwatch.rules import RuleEngine, load_pack

T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
GRID = "110101001001001"


def sensor(sensor_id: str = "S-1", kind: str = "rain_gauge", **changes: Any) -> Sensor:
    """An active sensor of `kind` with any field changed."""
    fields: dict[str, Any] = {"id": sensor_id, "kind": kind, "grid": GRID, "interval_s": 60}
    return Sensor.model_validate(fields | changes)


def reading(
    target: Sensor,
    seconds: float,
    values: Mapping[str, Any],
    *,
    channel: Channel = Channel.TELEMETRY,
    skew_s: float = 0.0,
) -> Reading:
    """A reading of `target` at T0 + seconds (device time), arriving skew_s later."""
    ts = T0 + timedelta(seconds=seconds)
    arrived = ts + timedelta(seconds=skew_s)
    fields: dict[str, Value] = dict(values)
    return Reading(target.id, target.kind, channel, ts, arrived, fields)


def engine_from(tmp_path: Path, text: str, name: str = "rules.yaml") -> RuleEngine:
    """An engine with the rules of one YAML document."""
    path = tmp_path / name
    path.write_text(text)
    return RuleEngine(load_pack([path]))


def at(seconds: float) -> datetime:
    """T0 + seconds."""
    return T0 + timedelta(seconds=seconds)


def brief(events: list[AlarmEvent]) -> list[tuple[str, str]]:
    """(transition, severity) of each event."""
    return [(event.transition.value, event.severity.value) for event in events]


def run(
    engine: RuleEngine, target: Sensor, steps: Iterable[tuple[float, Mapping[str, Any]]]
) -> list[tuple[str, str]]:
    """Feed (seconds, values) telemetry readings; the events' (transition, severity)."""
    out: list[tuple[str, str]] = []
    for seconds, values in steps:
        out += brief(engine.evaluate(target, reading(target, seconds, values)))
    return out
