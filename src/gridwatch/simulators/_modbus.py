"""A scenario's tilt sensors, rain gauges and elevators served as real Modbus devices on loopback.

Each device is a pymodbus server (Modbus TCP, or RTU frames over TCP as behind a serial device
server) whose registers follow the gateway's profiles (inclinometer-2axis, tipping-bucket-0.2,
elevator-board) and carry live values from the same device models as the MQTT simulators, paced
like `run_scenario`. By default each device has its own port and unit 1; with `shared_port` all
of them sit behind one port as units 1..N, as on one RS-485 line.

Faults are switched at run time, per device: `await server.set_fault("RG-1", Fault.SILENT)`.
silent, slow, exception and drop act on that unit's requests only; blackhole, `stop` and
`start` act on its port (on a shared port, on every unit behind it).

Scenario steps map onto the device: `offline` makes it silent until `online`; an elevator's
`fault` sets its fault register to the profile's code until `clear_fault`; `reset_counter`
restarts the gauge's tip counter at 0. A gauge counts 0.2 mm tips whatever mode the scenario
gives it; start near the 2**32 wrap with `initial_total_mm: 858993458.6` (2**32 - 3 tips).
"""

import asyncio
import heapq
import ipaddress
import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType

from gridwatch.simulators._feed import (
    FeedItem,
    SimMessage,
    StatusChange,
    _step_occurrences,
    iter_feed,
)
from gridwatch.simulators._modbus_endpoint import Endpoint, Fault, FaultSetting, ModbusUnit
from gridwatch.simulators._modbus_registers import PROFILES, DeviceRegisters
from gridwatch.simulators._pacing import Pacer
from gridwatch.simulators._scenario import ClearFaultStep, FaultStep, Scenario
from gridwatch.simulators._specs import RainGaugeSpec

logger = logging.getLogger("gridwatch.simulators")

ModbusFraming = Literal["tcp", "rtu"]
_FRAMERS: Final[dict[str, FramerType]] = {"tcp": FramerType.SOCKET, "rtu": FramerType.RTU}
# The gateway's names for the same two framings (a sensor's `protocol.transport`).
_TRANSPORTS: Final[dict[str, str]] = {"tcp": "tcp", "rtu": "rtu_over_tcp"}
_MAX_UNIT: Final = 247


@dataclass(frozen=True, slots=True)
class ModbusDevice:
    """Where one simulated device answers: what an installer registers in gridwatch."""

    device_id: str
    kind: str
    profile: str
    framing: ModbusFraming
    host: str
    port: int
    unit: int
    interval_s: float

    def protocol(self) -> dict[str, Any]:
        """The sensor's `protocol` object for gridwatch's sensor registry."""
        return {
            "type": "modbus",
            "transport": _TRANSPORTS[self.framing],
            "host": self.host,
            "port": self.port,
            "unit": self.unit,
            "profile": self.profile,
            "interval_s": self.interval_s,
        }


@dataclass(frozen=True, slots=True)
class _FaultRegister:
    """An elevator fault raised (a name) or cleared (None) by the timeline at `t_s`."""

    sensor_id: str
    fault: str | None
    t_s: float


class ModbusDeviceServer:
    """Serves a scenario's Modbus-capable devices on loopback; an async context manager."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        framing: ModbusFraming = "tcp",
        host: str = "127.0.0.1",
        port: int = 0,
        shared_port: bool = False,
        speed: float | None = 1.0,
        duration_s: float | None = None,
        seed: int = 0,
    ) -> None:
        """Plan the devices; nothing listens before `async with`.

        `port` 0 picks free ports; otherwise device i listens on `port + i` (all on `port`
        with `shared_port`). `speed` and `duration_s` pace the models as in `run_scenario`;
        full speed (None or math.inf) jumps to the end state, so it needs a duration.
        """
        if framing not in _FRAMERS:
            raise ValueError(f"framing must be tcp or rtu, not {framing!r}")
        # Simulated devices must never be mistaken for real ones on a network.
        if not _is_loopback(host):
            raise ValueError(f"host must be a loopback IP address, not {host!r}")
        specs = [spec for spec in scenario.devices if spec.kind in PROFILES]
        if not specs:
            raise ValueError(f"scenario {scenario.name} has no tilt, rain_gauge or elevator")
        last_port = port if shared_port or port == 0 else port + len(specs) - 1
        if not 0 <= port <= last_port <= 65_535:
            raise ValueError(f"ports {port}..{last_port} are outside 0..65535")
        if shared_port and len(specs) > _MAX_UNIT:
            raise ValueError(f"one port holds at most {_MAX_UNIT} units, not {len(specs)}")
        self._pacer = Pacer(speed)
        self._until = duration_s if duration_s is not None else scenario.duration_s
        if self._pacer.full_speed and self._until is None:
            raise ValueError("full speed needs a duration (the end state is what gets served)")
        self._scenario = _counting_tips(scenario)
        self._seed = seed
        self._framing = framing
        self._kinds = {spec.id: spec.kind for spec in specs}
        self._intervals = {spec.id: spec.interval_s for spec in specs}
        self._units = {
            spec.id: ModbusUnit(
                device_id=spec.id,
                unit_id=index + 1 if shared_port else 1,
                registers=DeviceRegisters(PROFILES[spec.kind]),
            )
            for index, spec in enumerate(specs)
        }
        framer = _FRAMERS[framing]
        groups = (
            [list(self._units.values())] if shared_port else [[u] for u in self._units.values()]
        )
        self._endpoints: dict[str, Endpoint] = {}
        for index, group in enumerate(groups):
            endpoint = Endpoint(
                host=host,
                port=port + index if port else 0,
                framer=framer,
                units={unit.unit_id: unit for unit in group},
            )
            self._endpoints.update({unit.device_id: endpoint for unit in group})
        self._items: Iterator[FeedItem | _FaultRegister] = iter(())
        self._next: FeedItem | _FaultRegister | None = None
        self._finished = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._feed_task: asyncio.Task[None] | None = None

    @property
    def devices(self) -> tuple[ModbusDevice, ...]:
        """Every served device with its address (free ports are known once serving)."""
        return tuple(self.device(device_id) for device_id in self._units)

    def device(self, device_id: str) -> ModbusDevice:
        """One served device's address (KeyError for an id that is not served)."""
        unit = self._unit(device_id)
        endpoint = self._endpoints[device_id]
        return ModbusDevice(
            device_id=device_id,
            kind=self._kinds[device_id],
            profile=unit.registers.profile.name,
            framing=self._framing,
            host=endpoint.host,
            port=endpoint.port,
            unit=unit.unit_id,
            interval_s=self._intervals[device_id],
        )

    def fault(self, device_id: str) -> FaultSetting:
        """The fault a device currently has."""
        return self._unit(device_id).setting

    async def set_fault(
        self,
        device_id: str,
        fault: Fault | str,
        *,
        delay_s: float = 1.0,
        exception_code: int = ExcCodes.DEVICE_FAILURE,
    ) -> None:
        """Make a device misbehave from its next request on; Fault.NONE heals it."""
        setting = FaultSetting(Fault(fault), delay_s, ExcCodes(exception_code))
        self._unit(device_id).setting = setting
        logger.info("sensor=%s modbus fault=%s", device_id, setting.fault)
        await self._reconcile(device_id)

    async def stop(self, device_id: str) -> None:
        """Close the device's port: connections are cut and new ones refused."""
        self._endpoint(device_id).stopped = True
        logger.info("sensor=%s modbus port stopped", device_id)
        await self._reconcile(device_id)

    async def start(self, device_id: str) -> None:
        """Listen again on the device's port (the same port as before)."""
        self._endpoint(device_id).stopped = False
        logger.info("sensor=%s modbus port started", device_id)
        await self._reconcile(device_id)

    async def wait_finished(self) -> None:
        """Return once the scenario's duration has passed (never for an endless one)."""
        await self._finished.wait()

    async def __aenter__(self) -> Self:
        self._items = _register_feed(self._scenario, seed=self._seed, until_s=self._until)
        self._next = next(self._items, None)
        self._pacer.start()
        # Devices answer with their first readings from the first request on.
        self._apply_until(math.inf if self._pacer.full_speed else 0.0)
        try:
            for endpoint in set(self._endpoints.values()):
                await endpoint.reconcile()
        except BaseException:
            self._close_endpoints()
            raise
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._feed_task = self._tasks.create_task(self._drive(), name="modbus feed")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        tasks, feed_task = self._tasks, self._feed_task
        self._tasks = self._feed_task = None
        try:
            if tasks is not None and feed_task is not None:
                feed_task.cancel()
                await tasks.__aexit__(exc_type, exc, traceback)
        finally:
            self._close_endpoints()

    def _unit(self, device_id: str) -> ModbusUnit:
        unit = self._units.get(device_id)
        if unit is None:
            raise KeyError(device_id)
        return unit

    def _endpoint(self, device_id: str) -> Endpoint:
        self._unit(device_id)
        return self._endpoints[device_id]

    async def _reconcile(self, device_id: str) -> None:
        # Before `async with`, settings are only recorded; entering applies them.
        if self._feed_task is not None:
            await self._endpoints[device_id].reconcile()

    def _close_endpoints(self) -> None:
        for endpoint in set(self._endpoints.values()):
            endpoint.close()

    async def _drive(self) -> None:
        while self._next is not None:
            await self._pacer.wait_until(self._next.t_s)
            self._apply_until(self._next.t_s)
        if self._until is not None:
            await self._pacer.wait_until(self._until)
        self._finished.set()

    def _apply_until(self, t_s: float) -> None:
        while self._next is not None and self._next.t_s <= t_s:
            self._apply(self._next)
            self._next = next(self._items, None)

    def _apply(self, item: FeedItem | _FaultRegister) -> None:
        unit = self._units.get(item.sensor_id)
        if unit is None:  # a camera: no Modbus profile
            return
        if isinstance(item, SimMessage):
            # Fault events are left out: the timeline's fault steps drive the fault register,
            # which must show a fault raised while the device was offline too.
            if item.suffix == "telemetry":
                unit.registers.report(item.payload)
        elif isinstance(item, StatusChange):
            unit.online = item.online
        else:
            unit.registers.set_fault(item.fault)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _counting_tips(scenario: Scenario) -> Scenario:
    # A Modbus gauge is a counter since power-up, so its model reports totals (which also makes
    # a reset_counter step visible); the physics and random draws do not depend on the mode.
    devices = tuple(
        spec.model_copy(update={"mode": "total"}) if isinstance(spec, RainGaugeSpec) else spec
        for spec in scenario.devices
    )
    return scenario.model_copy(update={"devices": devices})


def _register_feed(
    scenario: Scenario, *, seed: int, until_s: float | None
) -> Iterator[FeedItem | _FaultRegister]:
    feed = iter_feed(scenario, seed=seed, until_s=until_s)
    # Without one, filtering a repeating timeline for fault steps would never return.
    if not any(isinstance(step, FaultStep | ClearFaultStep) for step in scenario.timeline):
        return feed
    limit = math.inf if until_s is None else until_s
    occurrences = itertools.takewhile(lambda pair: pair[0] <= limit, _step_occurrences(scenario))
    fault_register = (
        _FaultRegister(step.device, step.fault if isinstance(step, FaultStep) else None, t_s)
        for t_s, step in occurrences
        if isinstance(step, FaultStep | ClearFaultStep)
    )
    return heapq.merge(feed, fault_register, key=lambda item: item.t_s)
