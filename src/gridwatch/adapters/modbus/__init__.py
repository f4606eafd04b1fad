"""Modbus devices: register maps as data, reads planned and decoded, lines and the poller."""

from gridwatch.adapters.modbus.lines import FailureReason, ModbusLine, PollError
from gridwatch.adapters.modbus.plan import ReadBlock, RegisterMap, decode_poll, plan_reads
from gridwatch.adapters.modbus.poller import (
    ModbusDevice,
    ModbusPoller,
    PolledReading,
    PollFailure,
    PollObserver,
    Probe,
)
from gridwatch.adapters.modbus.registers import (
    ByteOrder,
    DataType,
    RegisterPoint,
    RegisterType,
    RegisterValueError,
)

__all__ = [
    "ByteOrder",
    "DataType",
    "FailureReason",
    "ModbusDevice",
    "ModbusLine",
    "ModbusPoller",
    "PollError",
    "PollFailure",
    "PollObserver",
    "PolledReading",
    "Probe",
    "ReadBlock",
    "RegisterMap",
    "RegisterPoint",
    "RegisterType",
    "RegisterValueError",
    "decode_poll",
    "plan_reads",
]
