"""One simulated Modbus TCP endpoint: a pymodbus server whose request path injects faults.

pymodbus answers the requests from a `SimDevice` per unit, whose action copies the unit's live
register image in on every read. A request handler in front of pymodbus's own decides per unit
whether and when to answer (silent, slow, exception, drop). Faults that concern the port rather
than a request (blackhole, stopped) swap the listener itself.
"""

import asyncio
import enum
import ipaddress
import logging
import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from gridwatch.simulators._errors import SimulatorError
from gridwatch.simulators._modbus_registers import DeviceRegisters

logger = logging.getLogger("gridwatch.simulators")

_READ_CODES: Final = {"holding": 3, "input": 4}


class Fault(enum.StrEnum):
    """What a simulated Modbus device does wrong."""

    NONE = "none"
    SILENT = "silent"  # requests get no answer; the connection stays open
    SLOW = "slow"  # every answer comes after `delay_s`
    EXCEPTION = "exception"  # every request is answered with `exception_code`
    DROP = "drop"  # the connection is closed on each request
    BLACKHOLE = "blackhole"  # the port accepts connections and never reads them


@dataclass(frozen=True, slots=True)
class FaultSetting:
    """A fault with its parameters (only SLOW uses the delay, only EXCEPTION the code)."""

    fault: Fault = Fault.NONE
    delay_s: float = 1.0
    exception_code: ExcCodes = ExcCodes.DEVICE_FAILURE

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s < math.inf:
            raise ValueError(f"delay_s must be >= 0 and finite, not {self.delay_s!r}")


class ModbusServeError(SimulatorError):
    """A simulated Modbus endpoint could not listen on its address."""

    def __init__(self, host: str, port: int, problem: str) -> None:
        self.host = host
        self.port = port
        self.problem = problem
        super().__init__(f"modbus {host}:{port}: {problem}")


class ModbusUnit:
    """One simulated device behind an endpoint: unit id, live registers, what it does wrong."""

    def __init__(self, *, device_id: str, unit_id: int, registers: DeviceRegisters) -> None:
        self.device_id = device_id
        self.unit_id = unit_id
        self.registers = registers
        self.setting = FaultSetting()
        # Cleared by the scenario's offline step: the device is gone, so nothing answers.
        self.online = True

    def sim_device(self) -> SimDevice:
        """The pymodbus datastore of this unit: its one register table, read-only."""
        profile = self.registers.profile
        table = [
            SimData(0, count=profile.size, values=0, datatype=DataType.REGISTERS, readonly=True)
        ]
        absent = [SimData(0, datatype=DataType.INVALID)]
        # pymodbus wants a block in each bit table; `_answer` refuses them.
        no_bits = [SimData(0, values=False, datatype=DataType.BITS)]
        holding, inputs = (table, absent) if profile.table == "holding" else (absent, table)
        return SimDevice(
            id=self.unit_id, simdata=(no_bits, list(no_bits), holding, inputs), action=self._answer
        )

    async def _answer(
        self,
        function_code: int,
        _start_address: int,
        _address: int,
        _count: int,
        registers: list[int],
        _set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        # Called by pymodbus after its address checks; values are copied at read time, so a
        # float32 or uint32 pair always comes from one report.
        if function_code != _READ_CODES[self.registers.profile.table]:
            return ExcCodes.ILLEGAL_ADDRESS
        image = self.registers.image
        registers[: len(image)] = image
        return None


class _FaultInjectingHandler(ServerRequestHandler):
    """pymodbus's per-connection handler, asking the addressed unit's fault before answering."""

    def __init__(self, server: "_FaultInjectingServer") -> None:
        super().__init__(server, None, None, None)  # type: ignore[no-untyped-call]  # pymodbus is unannotated here
        self._units = server.units
        self._in_flight = server.in_flight

    async def handle_request(self) -> None:
        """Answer the request just decoded, as the addressed unit's fault dictates."""
        request = self.last_pdu
        if request is None:
            return
        unit = self._units.get(request.dev_id)
        # As on a serial line, an address no device has (or a device gone offline) gets nothing.
        if unit is None or not unit.online:
            return
        setting = unit.setting
        if setting.fault in (Fault.SILENT, Fault.BLACKHOLE):
            # BLACKHOLE only gets here in the instant before the endpoint swaps its listener.
            return
        if setting.fault is Fault.DROP:
            self.close()
            return
        if setting.fault is Fault.EXCEPTION:
            self._reply(ExceptionResponse(request.function_code, setting.exception_code), request)
            return
        if setting.fault is Fault.SLOW and not await self._delay(setting.delay_s):
            return
        # A newer request may have replaced `last_pdu` while this one waited; pymodbus's
        # handler reads it, and answers without suspending, so restoring it is enough.
        self.last_pdu = request
        await super().handle_request()  # type: ignore[no-untyped-call]  # pymodbus is unannotated here

    async def _delay(self, delay_s: float) -> bool:
        # The task is pymodbus's, not ours; the endpoint cancels it when it stops listening.
        task = asyncio.current_task()
        assert task is not None  # pymodbus runs every request handler as a task
        self._in_flight.add(task)
        try:
            await asyncio.sleep(delay_s)
        finally:
            self._in_flight.discard(task)
        return self.is_active()

    def _reply(self, response: ModbusPDU, request: ModbusPDU) -> None:
        response.transaction_id = request.transaction_id
        response.dev_id = request.dev_id
        self.pdu_send(response)


class _FaultInjectingServer(ModbusTcpServer):
    """pymodbus's TCP server with the fault-injecting handler on every connection."""

    def __init__(
        self, units: Mapping[int, ModbusUnit], *, framer: FramerType, address: tuple[str, int]
    ) -> None:
        self.units = units
        self.in_flight: set[asyncio.Task[Any]] = set()
        super().__init__(
            [unit.sim_device() for unit in units.values()], framer=framer, address=address
        )

    def callback_new_connection(self) -> _FaultInjectingHandler:
        """Handle a new connection with fault injection."""
        return _FaultInjectingHandler(self)

    def bound_port(self) -> int:
        """The TCP port the listener got (the one asked for, or a free one for port 0)."""
        # pymodbus types its listener as a transport; for TCP it is create_server's Server.
        listener = cast("asyncio.Server", self.transport)
        port: int = listener.sockets[0].getsockname()[1]
        return port


class Endpoint:
    """A loopback TCP port with one or more units behind it: serving, blackholed or stopped."""

    def __init__(
        self, *, host: str, port: int, framer: FramerType, units: Mapping[int, ModbusUnit]
    ) -> None:
        self.host = host
        self.port = port
        self.framer = framer
        self.units = units
        self.stopped = False
        self._server: _FaultInjectingServer | None = None
        self._blackhole: socket.socket | None = None

    async def reconcile(self) -> None:
        """Make the listener match the units' faults: blackhole wins over serving, stop over all."""
        blackholed = any(unit.setting.fault is Fault.BLACKHOLE for unit in self.units.values())
        if self.stopped:
            self.close()
        elif blackholed and self._blackhole is None:
            self.close()
            self._open_blackhole()
        elif not blackholed and self._server is None:
            self.close()
            await self._serve()

    def close(self) -> None:
        """Stop listening; open connections are closed and waiting answers abandoned."""
        if self._server is not None:
            server, self._server = self._server, None
            for task in server.in_flight:
                task.cancel()
            server.close()
        if self._blackhole is not None:
            self._blackhole.close()
            self._blackhole = None

    async def _serve(self) -> None:
        server = _FaultInjectingServer(
            self.units, framer=self.framer, address=(self.host, self.port)
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:
            # pymodbus logs the OSError and reports only that listening failed.
            raise ModbusServeError(self.host, self.port, "cannot listen (in use?)") from err
        self.port = server.bound_port()
        self._server = server
        logger.info("modbus listening on %s:%d units=%s", self.host, self.port, list(self.units))

    def _open_blackhole(self) -> None:
        # A socket that listens and is never accepted from: the kernel completes handshakes
        # into the backlog, so clients connect, send, and wait forever.
        family = socket.AF_INET6 if ipaddress.ip_address(self.host).version == 6 else socket.AF_INET
        try:
            self._blackhole = socket.create_server((self.host, self.port), family=family)
        except OSError as err:
            raise ModbusServeError(self.host, self.port, f"cannot listen: {err}") from err
        self.port = self._blackhole.getsockname()[1]
        logger.info("modbus blackhole on %s:%d units=%s", self.host, self.port, list(self.units))
