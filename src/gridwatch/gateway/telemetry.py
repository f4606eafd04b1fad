"""The telemetry store seam, and the embedded in-memory store used when no InfluxDB is set."""

from collections import deque
from typing import Protocol

from gridwatch.domain import Reading

DEFAULT_READINGS_PER_SENSOR = 2_000


class TelemetryStore(Protocol):
    """Where readings go; InfluxDB in production, memory in the demo."""

    async def write(self, reading: Reading) -> None:
        """Store one reading; returns once it is durable for this store's guarantees."""

    def recent(self, sensor_id: str, limit: int) -> list[Reading]:
        """The newest readings of one sensor, oldest first."""


class MemoryTelemetryStore:
    """Keeps the newest readings per sensor for the API and the demo; forgets on restart."""

    def __init__(self, *, per_sensor: int = DEFAULT_READINGS_PER_SENSOR) -> None:
        self._per_sensor = per_sensor
        self._readings: dict[str, deque[Reading]] = {}

    async def write(self, reading: Reading) -> None:
        """Append the reading to its sensor's bounded history."""
        history = self._readings.get(reading.sensor_id)
        if history is None:
            history = self._readings[reading.sensor_id] = deque(maxlen=self._per_sensor)
        history.append(reading)

    def recent(self, sensor_id: str, limit: int) -> list[Reading]:
        """The newest `limit` readings of the sensor, oldest first."""
        history = self._readings.get(sensor_id, ())
        return list(history)[-limit:] if limit > 0 else []
