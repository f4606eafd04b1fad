"""Reading feeds (JSON lines) and the sensor files that go with them.

A feed line is one reading::

    {"sensor_id": "RG-101", "kind": "rain_gauge", "channel": "telemetry",
     "ts": "2025-01-01T00:05:00.000Z", "values": {"rain_mm": 0.5}}

`ts` is RFC 3339 or Unix seconds/milliseconds; `received_at` (same forms) defaults to `ts`;
`kind` may be left out when the sensor is known. Lines of a simulator recording
(`{"topic": "gridwatch/RG-101/telemetry", "payload": "{...}", "t": 12.5}`) are read too:
the payload's `ts`, else the recording start plus `t`, is the reading time.
"""

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gridwatch.domain import Channel, Reading, Sensor, Value
from gridwatch.domain.sensors import SENSOR_ID_RE

RECORDING_START = datetime(2025, 1, 1, tzinfo=UTC)
_MS_THRESHOLD = 1e11  # Unix seconds this large can only be milliseconds


class FeedError(ValueError):
    """A feed or sensor file line that cannot be read, with where and why."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


@dataclass(frozen=True, slots=True)
class FeedReading:
    """A reading from a feed; `kind` is empty when the line did not say."""

    reading: Reading
    line: int


def parse_time(raw: Any) -> datetime:
    """An aware UTC datetime from RFC 3339 text or Unix seconds / milliseconds."""
    if isinstance(raw, bool):
        raise TypeError(f"not a time: {raw!r}")
    if isinstance(raw, int | float):
        seconds = raw / 1000 if raw > _MS_THRESHOLD else raw
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(raw, str):
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            raise ValueError(f"time without a zone: {raw!r}")
        return moment.astimezone(UTC)
    raise TypeError(f"not a time: {raw!r}")


def read_feed(path: Path, *, start: datetime = RECORDING_START) -> Iterator[FeedReading]:
    """The feed's readings in file order; `start` anchors recording lines without `ts`."""
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                item = _json_object(text, "a line")
                reading = _recorded(item, start) if "topic" in item else _reading(item)
            except (ValueError, TypeError, KeyError) as err:
                raise FeedError(path, number, str(err)) from err
            yield FeedReading(reading, number)


def _json_object(text: str, what: str) -> dict[str, Any]:
    document = json.loads(text)
    if not isinstance(document, dict):
        raise TypeError(f"{what} must be a JSON object")
    return document


def _reading(item: dict[str, Any]) -> Reading:
    sensor_id = str(item["sensor_id"])
    values = item.get("values", {})
    if not isinstance(values, dict):
        raise TypeError("values must be a JSON object")
    ts = parse_time(item["ts"])
    received = parse_time(item["received_at"]) if "received_at" in item else ts
    return Reading(
        sensor_id=sensor_id,
        kind=str(item.get("kind", "")),
        channel=Channel(item.get("channel", "telemetry")),
        ts=ts,
        received_at=received,
        values=_values(values),
    )


def _recorded(item: dict[str, Any], start: datetime) -> Reading:
    parts = str(item["topic"]).split("/")
    if len(parts) < 3 or not SENSOR_ID_RE.match(parts[-2]):
        raise ValueError(f"topic {item['topic']!r} is not prefix/sensor_id/channel")
    channel = Channel(parts[-1])
    arrived = start + timedelta(seconds=float(item.get("t", 0)))
    text = str(item.get("payload", "")).strip()
    if channel is Channel.STATUS and not text.startswith("{"):
        payload: dict[str, Any] = {"status": text}
    else:
        payload = json.loads(text)
        if not isinstance(payload, dict):
            raise ValueError("payload must be a JSON object")
    ts = parse_time(payload.pop("ts")) if "ts" in payload else arrived
    return Reading(parts[-2], "", channel, ts, arrived, _values(payload))


def _values(raw: dict[str, Any]) -> dict[str, Value]:
    return {
        str(key): value for key, value in raw.items() if isinstance(value, bool | int | float | str)
    }


def write_feed_line(reading: Reading) -> str:
    """One reading as a feed line (compact JSON, no newline)."""
    item: dict[str, Any] = {
        "sensor_id": reading.sensor_id,
        "kind": reading.kind,
        "channel": reading.channel.value,
        "ts": _iso(reading.ts),
        "values": reading.values,
    }
    if reading.received_at != reading.ts:
        item["received_at"] = _iso(reading.received_at)
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def load_sensors(path: Path) -> dict[str, Sensor]:
    """Sensors from a YAML file with a `sensors` list, by id."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise FeedError(path, 0, f"cannot be read: {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("sensors"), list):
        raise FeedError(path, 0, "must be a mapping with a 'sensors' list")
    sensors: dict[str, Sensor] = {}
    for index, raw in enumerate(document["sensors"], start=1):
        try:
            sensor = Sensor.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise FeedError(path, 0, f"sensor #{index}: {where}: {first['msg']}") from err
        sensors[sensor.id] = sensor
    return sensors


def with_kind(reading: Reading, sensors: Mapping[str, Sensor]) -> Reading | None:
    """The reading with the registered sensor's kind, or None for an unknown sensor."""
    sensor = sensors.get(reading.sensor_id)
    if sensor is None:
        return None
    if reading.kind == sensor.kind:
        return reading
    return Reading(
        reading.sensor_id,
        sensor.kind,
        reading.channel,
        reading.ts,
        reading.received_at,
        reading.values,
    )
