"""Modbus in the running service: which sensors are polled, with which map; what polls report."""

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import orjson

from gridwatch.adapters.modbus import FailureReason, ModbusDevice, PollFailure, RegisterMap
from gridwatch.domain import Sensor, SensorStatus
from gridwatch.domain.sensors import ModbusProtocol
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.rejects import RejectedMessage, RejectLog, RejectReason
from gridwatch.registry.profiles import FAULT_KEY, DeviceProfile

log = logging.getLogger("gridwatch.modbus")

# A draft sensor may not be installed yet and a retired one is gone; a sensor in maintenance is
# still polled, so its readings keep coming while the rules decide what they raise.
POLLED_STATUSES = frozenset(
    {SensorStatus.COMMISSIONING, SensorStatus.ACTIVE, SensorStatus.MAINTENANCE}
)
# What the device answered is kept for these; a timeout or a refused connection has no answer
# worth keeping, only a count.
_SET_ASIDE = {
    FailureReason.EXCEPTION: RejectReason.MODBUS_EXCEPTION,
    FailureReason.BAD_VALUE: RejectReason.BAD_REGISTER_VALUE,
}


def register_map(profile: DeviceProfile) -> RegisterMap:
    """The profile's registers ready to poll."""
    has_fault = any(point.key == FAULT_KEY for point in profile.registers)
    return RegisterMap.build(
        profile.registers,
        fault_codes=profile.fault_codes,
        fault_key=FAULT_KEY if has_fault else None,
    )


def register_maps(profiles: Mapping[str, DeviceProfile]) -> dict[str, RegisterMap]:
    """Every Modbus profile's map by profile name, planned once for all the sensors using it."""
    return {
        name: register_map(profile)
        for name, profile in profiles.items()
        if profile.protocol == "modbus"
    }


def modbus_device(sensor: Sensor, maps: Mapping[str, RegisterMap]) -> ModbusDevice | None:
    """The sensor as a device to poll, or None when it is not a Modbus sensor with a profile."""
    protocol = sensor.protocol
    if not isinstance(protocol, ModbusProtocol):
        return None
    found = maps.get(protocol.profile)
    if found is None:
        log.warning(
            "modbus sensor %s not polled: no modbus profile %r is loaded",
            sensor.id, protocol.profile,
        )  # fmt: skip
        return None
    return ModbusDevice(sensor.id, protocol, found)


def polled_devices(
    sensors: Iterable[Sensor], maps: Mapping[str, RegisterMap]
) -> list[ModbusDevice]:
    """Every device the poller should poll now."""
    devices = (
        modbus_device(sensor, maps) for sensor in sensors if sensor.status in POLLED_STATUSES
    )
    return [device for device in devices if device is not None]


class PollRecorder:
    """Counts polls and failures in the metrics; sets aside what a device answered wrongly."""

    def __init__(self, *, metrics: Metrics, rejects: RejectLog) -> None:
        self._metrics = metrics
        self._rejects = rejects
        self._polls = metrics.modbus_polls
        self._latency = metrics.modbus_poll_seconds
        self._lag = metrics.modbus_schedule_lag_seconds

    def polled(self, *, sensor_id: str, latency_s: float, lag_s: float) -> None:
        """A poll succeeded."""
        self._polls.inc()
        self._latency.observe(latency_s)
        self._lag.observe(lag_s)

    def failed(self, failure: PollFailure) -> None:
        """A poll failed; an answer that was wrong is set aside like a bad payload."""
        self._metrics.modbus_poll_failures.labels(failure.reason.value).inc()
        reason = _SET_ASIDE.get(failure.reason)
        if reason is None:
            log.debug("modbus poll failed sensor=%s: %s", failure.sensor_id, failure.detail)
            return
        self._metrics.rejected.labels(reason.value).inc()
        self._rejects.add(
            RejectedMessage(
                topic=f"{failure.line}/unit/{failure.unit}",
                payload=orjson.dumps(failure.registers),
                received_at=datetime.now(UTC),
                reason=reason,
                detail=failure.detail,
                sensor_id=failure.sensor_id,
            )
        )
