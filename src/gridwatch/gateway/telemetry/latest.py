"""The newest reading of each sensor, in memory: what commissioning and the console look at."""

from gridwatch.domain import Reading


class LatestReadings:
    """One reading per sensor, replaced by each newer arrival; forgotten on restart."""

    def __init__(self) -> None:
        self._newest: dict[str, Reading] = {}

    def put(self, reading: Reading) -> None:
        """Remember the reading as its sensor's newest."""
        self._newest[reading.sensor_id] = reading

    def newest(self, sensor_id: str) -> Reading | None:
        """The sensor's newest reading since start, or None."""
        return self._newest.get(sensor_id)
