"""The telemetry schema: which measurement, tags and fields a reading becomes (pure).

One module owns it: the stores write with it and the dashboards query with it, so a renamed
field cannot silently empty a panel. Every backend (InfluxDB or the embedded store) stores the
same points.

- Telemetry goes to one measurement per sensor kind (`rain_gauge`, `tilt`, `elevator`, …).
- Events (elevator faults, camera detections) go to `events`, tagged with the sensor's `kind`
  and the event `type`.
- Status messages (`online`/`offline`) go to `device_status`, field `online`.

Tags are the sensor's `sensor_id`, `grid`, `community`, `street`, `district` (prefixes of the
unit-grid code) and `model`. Fields are the canonical payload fields plus derived ones:
`tilt_deg` (a tilt sensor's deviation from its installation baseline) and `rain_mm` (a rain
gauge's increment, derived from a cumulative `total_mm` with resets detected).
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from gridwatch.domain import Channel, Reading, Sensor, Value

EVENTS_MEASUREMENT: Final = "events"
STATUS_MEASUREMENT: Final = "device_status"

TAG_KEYS: Final = ("sensor_id", "grid", "community", "street", "district", "model")
EVENT_TAG_KEYS: Final = (*TAG_KEYS, "kind", "type")

# Derived fields, by the kind they belong to.
TILT_DEG: Final = "tilt_deg"
RAIN_MM: Final = "rain_mm"
TOTAL_MM: Final = "total_mm"
# The field that names an event, by kind; it also becomes the event's `type` tag.
EVENT_TYPE_FIELD: Final = {"elevator": "fault", "camera": "event"}
# Every event point carries this field, so a count over `events` never depends on which
# optional fields a device sent.
EVENT_COUNT_FIELD: Final = "count"

# A counter lower than the last one by more than this has been reset (power loss).
COUNTER_RESET_SLACK: Final = 1e-6

# Grid code prefixes: 6-digit district (GB/T 2260), +3 street, +3 community. The same for
# 15-digit codes and 14-digit legacy ones (6+3+3+2).
_DISTRICT_DIGITS: Final = 6
_STREET_DIGITS: Final = 9
_COMMUNITY_DIGITS: Final = 12

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def measurement_for(kind: str, channel: Channel) -> str:
    """The measurement a reading of this kind on this channel is stored in."""
    if channel is Channel.EVENT:
        return EVENTS_MEASUREMENT
    if channel is Channel.STATUS:
        return STATUS_MEASUREMENT
    return kind


def sensor_tags(sensor: Sensor) -> dict[str, str]:
    """The tags every point of this sensor carries."""
    grid = sensor.grid
    return {
        "sensor_id": sensor.id,
        "grid": grid,
        "community": grid[:_COMMUNITY_DIGITS],
        "street": grid[:_STREET_DIGITS],
        "district": grid[:_DISTRICT_DIGITS],
        "model": sensor.model,
    }


@dataclass(frozen=True, slots=True)
class Series:
    """One sensor's series in one measurement: the part of a point that never changes."""

    measurement: str
    sensor_id: str
    tags: tuple[tuple[str, str], ...]  # sorted by key, as InfluxDB prefers


# A stored point: its series, its fields and its time in nanoseconds since the epoch. A tuple,
# not an object per point: the hot path builds tens of thousands a second.
Point = tuple[Series, dict[str, Value], int]


class PointBuilder:
    """Turns readings into points, remembering what derived fields need (counter totals).

    One per gateway; not thread-safe. Series are cached per sensor and rebuilt when the
    registry hands over a changed `Sensor` (a new grid or model changes the tags).
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, Channel, str], tuple[Sensor, Series]] = {}
        self._last_total: dict[str, float] = {}

    def point(self, sensor: Sensor, reading: Reading) -> Point:
        """The point a reading of this sensor is stored as."""
        fields = dict(reading.values)
        event_type: str | None = None
        if reading.channel is Channel.TELEMETRY:
            self._derive(sensor, fields)
        elif reading.channel is Channel.EVENT:
            type_field = EVENT_TYPE_FIELD.get(sensor.kind)
            raw_type = fields.get(type_field) if type_field else None
            event_type = raw_type if isinstance(raw_type, str) else "unknown"
            fields[EVENT_COUNT_FIELD] = 1
        else:
            fields = {"online": reading.values.get("status") == "online"}
        series = self._series_for(sensor, reading.channel, event_type)
        return (series, fields, time_ns(reading))

    def forget(self, sensor_id: str) -> None:
        """Drop what is remembered of a sensor (it was retired or deleted)."""
        self._last_total.pop(sensor_id, None)
        for key in [key for key in self._series if key[0] == sensor_id]:
            del self._series[key]

    def _derive(self, sensor: Sensor, fields: dict[str, Value]) -> None:
        kind = sensor.kind
        if kind == "tilt":
            fields[TILT_DEG] = tilt_deviation(sensor, fields)
        elif kind == "rain_gauge":
            total = fields.get(TOTAL_MM)
            if isinstance(total, float | int) and not isinstance(total, bool):
                last = self._last_total.get(sensor.id)
                self._last_total[sensor.id] = float(total)
                if RAIN_MM not in fields and last is not None:
                    fields[RAIN_MM] = rain_increment(last, float(total))

    def _series_for(self, sensor: Sensor, channel: Channel, event_type: str | None) -> Series:
        # The member, not its .value: an enum property costs more than the dict lookup.
        key = (sensor.id, channel, event_type or "")
        cached = self._series.get(key)
        # Sensors are frozen and replaced whole on change, so identity tells us it is current.
        if cached is not None and cached[0] is sensor:
            return cached[1]
        tags = sensor_tags(sensor)
        if channel is Channel.EVENT:
            tags["kind"] = str(sensor.kind)
            tags["type"] = event_type or "unknown"
        series = Series(
            measurement=measurement_for(sensor.kind, channel),
            sensor_id=sensor.id,
            tags=tuple(sorted(tags.items())),
        )
        self._series[key] = (sensor, series)
        return series


def tilt_deviation(sensor: Sensor, fields: dict[str, Value]) -> float:
    """Degrees between the current tilt and the installation baseline (0 when none was taken)."""
    x = fields.get("tilt_x_deg", 0.0)
    y = fields.get("tilt_y_deg", 0.0)
    assert isinstance(x, float | int)
    assert isinstance(y, float | int)
    dx = float(x) - sensor.calibration.get("baseline_x_deg", 0.0)
    dy = float(y) - sensor.calibration.get("baseline_y_deg", 0.0)
    # A micro-degree is far below any inclinometer's resolution; the shorter number is also
    # cheaper to format on the hot path.
    return round(math.hypot(dx, dy), 6)


def rain_increment(last_total: float, total: float) -> float:
    """Rain since the last cumulative reading; a counter that went down was reset to zero."""
    if total < last_total - COUNTER_RESET_SLACK:
        return total
    return max(total - last_total, 0.0)


def time_ns(reading: Reading) -> int:
    """The reading's device time in integer nanoseconds since the epoch, exactly."""
    # Integer arithmetic: timestamp() goes through a float and can lose a microsecond.
    return (reading.ts - _EPOCH) // _MICROSECOND * 1_000
