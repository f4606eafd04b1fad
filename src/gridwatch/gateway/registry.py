"""The in-memory sensor index the ingest path reads, and the YAML sensors file it loads from."""

from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml
from pydantic import ValidationError

from gridwatch.domain import Sensor


class SensorFileError(ValueError):
    """A sensors file that cannot be used, naming the entry and field."""


class SensorRegistry:
    """Sensors by id; a dict lookup on the hot path, replaced whole on reload."""

    def __init__(self, sensors: Iterable[Sensor] = ()) -> None:
        self._by_id: dict[str, Sensor] = {}
        self.replace(sensors)

    def get(self, sensor_id: str) -> Sensor | None:
        """The sensor with this id, or None."""
        return self._by_id.get(sensor_id)

    def replace(self, sensors: Iterable[Sensor]) -> None:
        """Swap in a new set of sensors; refuses duplicate ids."""
        by_id: dict[str, Sensor] = {}
        for sensor in sensors:
            if sensor.id in by_id:
                raise SensorFileError(f"duplicate sensor id {sensor.id!r}")
            by_id[sensor.id] = sensor
        self._by_id = by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Sensor]:
        return iter(self._by_id.values())


def load_sensors_file(path: Path) -> list[Sensor]:
    """Sensors from a YAML file with a top-level `sensors` list."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SensorFileError(f"{path}: cannot be read ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise SensorFileError(f"{path}: is not valid YAML ({err})") from err
    if not isinstance(document, dict) or not isinstance(document.get("sensors"), list):
        raise SensorFileError(f"{path}: must be a mapping with a 'sensors' list")
    sensors = []
    for index, raw in enumerate(document["sensors"], start=1):
        try:
            sensors.append(Sensor.model_validate(raw))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "sensor"
            label = raw.get("id") if isinstance(raw, dict) else None
            raise SensorFileError(
                f"{path}: sensor #{index}{f' ({label})' if label else ''}: {field}: {first['msg']}"
            ) from err
    return sensors
