"""Modbus lines: one connection (a TCP endpoint or a serial port) shared by its devices.

pymodbus does the framing (MBAP, RTU) and sends one request at a time per client; this layer
owns what pymodbus leaves to the application: when to (re)connect, how long to wait, and
turning every way a request can fail into one `PollError` with a reason a metric can count.
"""

import asyncio
import logging
import time
from enum import StrEnum
from typing import Final

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from gridwatch.adapters.modbus.plan import ReadBlock, is_bit_table
from gridwatch.adapters.modbus.registers import RegisterType
from gridwatch.domain.sensors import ModbusProtocol, ModbusTransport

log = logging.getLogger("gridwatch.modbus")

# pymodbus closes a TCP connection after a few unanswered requests; on a device server with
# several slaves one silent slave would then cut off the others. The poller decides instead.
_NEVER_DISCONNECT: Final = 1 << 30
# After a failed connect, requests fail at once for this long instead of each device trying
# again: a dead device server with 50 slaves costs one connect attempt, not 50.
LINE_RETRY_S: Final = 1.0


class FailureReason(StrEnum):
    """Why a poll failed: the `reason` label of the failure metric."""

    REFUSED = "connect_failed"  # no connection could be made
    DISCONNECTED = "disconnected"  # the connection closed under the request
    TIMEOUT = "timeout"  # no answer within the device's timeout
    EXCEPTION = "exception"  # the device answered with a Modbus exception code
    BAD_RESPONSE = "bad_response"  # an answer that is not what was asked
    BAD_VALUE = "bad_value"  # an answer the register map cannot turn into a reading


class PollError(Exception):
    """A request that produced no usable answer; `reason` for metrics, `detail` for people."""

    def __init__(self, reason: FailureReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


def exception_name(code: int) -> str:
    """A Modbus exception code as its name (`4 (DEVICE_FAILURE)`)."""
    try:
        return f"{code} ({ExcCodes(code).name})"
    except ValueError:
        return str(code)


class ModbusLine:
    """One pymodbus client; its devices' requests go out one at a time.

    The line connects on first use and again after the connection is lost; when a connect
    fails, requests fail fast for `LINE_RETRY_S` (the devices' own backoff spaces their polls).
    """

    def __init__(self, protocol: ModbusProtocol) -> None:
        self.key = protocol.line
        self.transport = protocol.transport
        self._client = _client_for(protocol)
        self._client.set_max_no_responses(_NEVER_DISCONNECT)
        self._connect_lock = asyncio.Lock()
        self._failed_until = 0.0
        self._last_refusal = ""
        self.devices = 0

    @property
    def connected(self) -> bool:
        """Whether the line holds an open connection."""
        return self._client.connected

    async def read(self, *, unit: int, block: ReadBlock, timeout_s: float) -> list[int]:
        """The block's registers (coils and inputs as 0/1), or PollError."""
        await self._ensure_connected(timeout_s)
        request = _READS[block.table]
        try:
            # pymodbus bounds the answer by the client timeout; this bound also covers a
            # client that never returns, so a device can never hold the line longer. (Not
            # wait_for: on 3.11 it can swallow a cancellation that races the answer.)
            async with asyncio.timeout(timeout_s * 2 + 0.5):
                response: ModbusPDU = await request(
                    self._client, block.address, count=block.count, device_id=unit
                )
        except (TimeoutError, ModbusIOException) as err:
            raise PollError(FailureReason.TIMEOUT, f"no answer within {timeout_s:g}s") from err
        except ConnectionException as err:
            raise PollError(FailureReason.DISCONNECTED, f"connection lost ({err})") from err
        except ModbusException as err:
            raise PollError(FailureReason.BAD_RESPONSE, str(err)) from err
        if response.isError():
            raise PollError(
                FailureReason.EXCEPTION,
                f"exception {exception_name(response.exception_code)} "
                f"reading {block.table.value} {block.address}+{block.count}",
            )
        if is_bit_table(block.table):
            return [int(bit) for bit in response.bits[: block.count]]
        return list(response.registers)

    def close(self) -> None:
        """Drop the connection; a later request connects again."""
        self._client.close()

    def _is_open(self) -> bool:
        return self._client.connected

    async def _ensure_connected(self, timeout_s: float) -> None:
        if self._is_open():
            return
        async with self._connect_lock:
            if self._is_open():  # another device connected the line while we waited
                return
            if time.monotonic() < self._failed_until:
                raise PollError(FailureReason.REFUSED, self._last_refusal)
            try:
                async with asyncio.timeout(timeout_s * 2 + 0.5):
                    connected = await self._client.connect()
            except (TimeoutError, OSError, ModbusException) as err:
                connected, detail = False, f"{type(err).__name__}: {err}"
            else:
                detail = "connection refused or unreachable"
            if not connected:
                self._client.close()
                self._failed_until = time.monotonic() + LINE_RETRY_S
                self._last_refusal = f"cannot connect to {self.key} ({detail})"
                raise PollError(FailureReason.REFUSED, self._last_refusal)
            log.info("modbus line connected: %s", self.key)


_READS = {
    RegisterType.HOLDING: AsyncModbusTcpClient.read_holding_registers,
    RegisterType.INPUT: AsyncModbusTcpClient.read_input_registers,
    RegisterType.COIL: AsyncModbusTcpClient.read_coils,
    RegisterType.DISCRETE: AsyncModbusTcpClient.read_discrete_inputs,
}


def _client_for(protocol: ModbusProtocol) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    # retries=0: a dead slave costs one timeout per poll, and the poller's backoff decides when
    # to ask again. reconnect_delay=0: pymodbus's own reconnect loop would race ours.
    common = {"timeout": protocol.timeout_s, "retries": 0, "reconnect_delay": 0.0}
    if protocol.transport is ModbusTransport.RTU:
        assert protocol.serial_port is not None  # guaranteed by the model
        return AsyncModbusSerialClient(
            protocol.serial_port,
            framer=FramerType.RTU,
            baudrate=protocol.baudrate,
            parity=protocol.parity,
            stopbits=protocol.stopbits,
            **common,  # type: ignore[arg-type]
        )
    assert protocol.host is not None  # guaranteed by the model
    framer = FramerType.RTU if protocol.transport is ModbusTransport.RTU_OVER_TCP else None
    return AsyncModbusTcpClient(
        protocol.host,
        port=protocol.port,
        framer=framer or FramerType.SOCKET,
        **common,  # type: ignore[arg-type]
    )
