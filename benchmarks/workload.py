"""A synthetic city for the rule benchmarks: sensors of every kind and their readings."""

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from gridwatch.domain import Channel, Reading, Sensor, Value

START = datetime(2025, 7, 1, tzinfo=UTC)
# Share of each kind among the sensors, and their reporting interval in seconds.
MIX = (
    ("rain_gauge", 0.4, 300.0),
    ("tilt", 0.3, 60.0),
    ("elevator", 0.2, 10.0),
    ("camera", 0.1, 120.0),
)
# One round is this much city time; each sensor reports in the rounds its interval says.
ROUND_S = 10.0
CAMERA_EVENTS = (
    "exposed_garbage",
    "illegal_parking_motor",
    "crowd_gathering",
    "mobile_vendor",
    "piled_materials",
    "smoke_fire",
)


def make_sensors(count: int) -> list[Sensor]:
    """`count` active sensors in the MIX proportions."""
    sensors = []
    for index in range(count):
        position = (index % 10) / 10
        kind, interval = next((k, i) for k, share, i in _cumulative() if position < share)
        fields: dict[str, object] = {
            "id": f"{kind[:2].upper()}-{index:06d}",
            "kind": kind,
            "grid": "110101001001001",
            "interval_s": interval,
        }
        if kind == "tilt":
            fields["calibration"] = {"baseline_x_deg": 0.1, "baseline_y_deg": -0.05}
        sensors.append(Sensor.model_validate(fields))
    return sensors


def _cumulative() -> Iterator[tuple[str, float, float]]:
    total = 0.0
    for kind, share, interval in MIX:
        total += share
        yield kind, round(total, 6), interval


def readings_round(sensors: list[Sensor], round_no: int, rng: random.Random) -> list[Reading]:
    """The readings of one ROUND_S step of city time; sensors report at staggered phases."""
    out = []
    now = round_no * ROUND_S
    for index, sensor in enumerate(sensors):
        every = max(1, round(sensor.interval_s / ROUND_S))
        if (round_no + index) % every:
            continue
        ts = START + timedelta(seconds=now)
        channel = Channel.EVENT if sensor.kind == "camera" else Channel.TELEMETRY
        out.append(Reading(sensor.id, sensor.kind, channel, ts, ts, _values(sensor.kind, rng)))
    return out


def _values(kind: str, rng: random.Random) -> dict[str, Value]:
    if kind == "rain_gauge":
        raining = rng.random() < 0.3
        return {"rain_mm": round(rng.uniform(0, 3), 1) if raining else 0.0, "battery_v": 3.6}
    if kind == "tilt":
        return {
            "tilt_x_deg": round(0.1 + rng.gauss(0, 0.01), 4),
            "tilt_y_deg": round(-0.05 + rng.gauss(0, 0.01), 4),
            "wind_ms": round(max(0.0, rng.gauss(6, 2.5)), 1),
            "battery_v": 3.58,
        }
    if kind == "elevator":
        moving = rng.random() < 0.5
        return {
            "floor": rng.randint(1, 18),
            "direction": "up" if moving else "none",
            "door": "closed" if moving or rng.random() < 0.7 else "open",
            "moving": moving,
            "in_door_zone": not moving,
            "mode": "normal",
            "occupied": rng.random() < 0.5,
            "speed_ms": 2.0 if moving else 0.0,
        }
    return {"event": rng.choice(CAMERA_EVENTS), "confidence": round(rng.uniform(0.3, 0.99), 2)}
