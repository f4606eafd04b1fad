"""A register map as the reads that fetch it, and a poll's answers as values (pure).

Contiguous points of one table are merged into one request up to the protocol's limits (125
registers, 2,000 coils or inputs per read): a board of ten registers is one round trip, not ten.
Only contiguous (or shared) addresses are merged: reading a gap could touch an address the device
does not implement and fail the whole read with ILLEGAL DATA ADDRESS.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from gridwatch.adapters.modbus.registers import (
    MAX_REGISTERS_PER_READ,
    RegisterPoint,
    RegisterType,
    RegisterValueError,
    Scalar,
    decode_registers,
    lookup_value,
    raw_value,
)

MAX_BITS_PER_READ: Final = 2000
_BIT_TABLES: Final = frozenset({RegisterType.COIL, RegisterType.DISCRETE})


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: a run of addresses of one table, and the points it carries."""

    table: RegisterType
    address: int
    count: int
    points: tuple[RegisterPoint, ...]


def plan_reads(points: Sequence[RegisterPoint]) -> tuple[ReadBlock, ...]:
    """The fewest reads that fetch every point, in table and address order."""
    ordered = sorted(points, key=lambda p: (p.register_type.value, p.address))
    blocks: list[ReadBlock] = []
    start = end = 0
    members: list[RegisterPoint] = []
    table: RegisterType | None = None
    for point in ordered:
        limit = MAX_BITS_PER_READ if point.register_type in _BIT_TABLES else MAX_REGISTERS_PER_READ
        point_end = point.address + point.count
        joins = (
            point.register_type is table
            and point.address <= end
            and max(end, point_end) - start <= limit
        )
        if joins:
            end = max(end, point_end)
            members.append(point)
            continue
        if table is not None:
            blocks.append(ReadBlock(table, start, end - start, tuple(members)))
        table, start, end, members = point.register_type, point.address, point_end, [point]
    if table is not None:
        blocks.append(ReadBlock(table, start, end - start, tuple(members)))
    return tuple(blocks)


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A device's register map ready to poll: its reads, and how to turn answers into values.

    `fault_key` names the fault-code register, whose code `fault_codes` maps to a fault name
    (0 is no fault); it is reported apart from the telemetry values.
    """

    points: tuple[RegisterPoint, ...]
    fault_codes: Mapping[str, str] = field(default_factory=dict)
    fault_key: str | None = None
    blocks: tuple[ReadBlock, ...] = ()

    @classmethod
    def build(
        cls,
        points: Sequence[RegisterPoint],
        *,
        fault_codes: Mapping[str, str] | None = None,
        fault_key: str | None = None,
    ) -> "RegisterMap":
        """The map with its reads planned."""
        return cls(tuple(points), dict(fault_codes or {}), fault_key, plan_reads(points))


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one poll read: telemetry values, raw counter values, and the fault code (0: none)."""

    values: dict[str, Scalar]
    counters: dict[str, int]
    fault_code: int | None


def decode_poll(register_map: RegisterMap, answers: Sequence[Sequence[int]]) -> Decoded:
    """Decode the answers to `register_map.blocks` (in order); RegisterValueError if one is bad.

    Counters are reported raw (see `CounterTracker`); a float that is not finite, a code outside
    a value table or an unknown fault code is a bad value, named by its point.
    """
    values: dict[str, Scalar] = {}
    counters: dict[str, int] = {}
    fault_code: int | None = None
    for block, words in zip(register_map.blocks, answers, strict=True):
        if len(words) < block.count:
            raise RegisterValueError(
                block.points[0].key,
                f"the device answered {len(words)} of {block.count} registers",
            )
        for point in block.points:
            first = point.address - block.address
            raw = _decode_point(point, words[first : first + point.count])
            if point.key == register_map.fault_key:
                fault_code = int(raw)
                if fault_code and str(fault_code) not in register_map.fault_codes:
                    raise RegisterValueError(point.key, f"unknown fault code {fault_code}")
            elif point.counter:
                counters[point.key] = int(raw)
            else:
                values[point.key] = lookup_value(point, raw)
    return Decoded(values, counters, fault_code)


def _decode_point(point: RegisterPoint, words: Sequence[int]) -> Scalar:
    # A counter is carried as the device counts (whole units), and scaled once carried.
    decode = raw_value if point.counter else decode_registers
    try:
        raw = decode(point, words)
    except ValueError as err:
        raise RegisterValueError(point.key, str(err).removeprefix(f"{point.key}: ")) from err
    if isinstance(raw, float) and not math.isfinite(raw):
        raise RegisterValueError(point.key, f"{raw} is not a finite number")
    return raw


class CounterTracker:
    """Carries wrapping counters (a tip counter at 2^32) across the wrap, per device.

    A counter lower than the last one either wrapped (it was in the top sixteenth of its range
    and is now in the bottom one) or was reset (power loss), which the store already detects;
    only a wrap adds the modulus. The carried total starts again at the raw count when the
    gateway restarts, which the store also reads as a reset.
    """

    def __init__(self, points: Sequence[RegisterPoint]) -> None:
        self._points = {point.key: point for point in points if point.counter}
        self._last: dict[str, int] = {}
        self._carry: dict[str, int] = {}

    def values(self, counters: Mapping[str, int]) -> dict[str, float | int]:
        """Each counter's carried value, scaled like its point."""
        out: dict[str, float | int] = {}
        for key, raw in counters.items():
            point = self._points[key]
            modulus = point.counter_modulus
            last = self._last.get(key)
            if last is not None and raw < last:
                wrapped = last >= modulus - modulus // 16 and raw < modulus // 16
                self._carry[key] = self._carry.get(key, 0) + modulus if wrapped else 0
            self._last[key] = raw
            total = raw + self._carry.get(key, 0)
            out[key] = (
                total
                if point.scale == 1 and point.offset == 0
                else (total * point.scale + point.offset)
            )
        return out


def is_bit_table(table: RegisterType) -> bool:
    """Whether reads of this table return bits (coils, discrete inputs) rather than words."""
    return table in _BIT_TABLES


__all__ = [
    "MAX_BITS_PER_READ",
    "MAX_REGISTERS_PER_READ",
    "CounterTracker",
    "Decoded",
    "ReadBlock",
    "RegisterMap",
    "decode_poll",
    "is_bit_table",
    "plan_reads",
]
