"""Pure value types shared by every layer: readings, sensors, severities, alarms."""

from gridwatch.domain.alarms import AlarmEvent, AlarmTransition
from gridwatch.domain.readings import Channel, Reading, Value
from gridwatch.domain.sensors import Location, Sensor, SensorKind, SensorStatus
from gridwatch.domain.severity import Severity

__all__ = [
    "AlarmEvent",
    "AlarmTransition",
    "Channel",
    "Location",
    "Reading",
    "Sensor",
    "SensorKind",
    "SensorStatus",
    "Severity",
    "Value",
]
