"""Register maps: every type and byte order decodes exactly; reads are planned and decoded."""

from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pymodbus.client.mixin import ModbusClientMixin

from gridwatch.adapters.modbus.plan import (
    MAX_REGISTERS_PER_READ,
    CounterTracker,
    RegisterMap,
    decode_poll,
    plan_reads,
)
from gridwatch.adapters.modbus.registers import (
    PYMODBUS_TYPE,
    REGISTER_COUNT,
    ByteOrder,
    DataType,
    RegisterPoint,
    RegisterValueError,
    decode_registers,
)

A, B, C, D = ByteOrder.ABCD, ByteOrder.BADC, ByteOrder.CDAB, ByteOrder.DCBA


def point(**fields: Any) -> RegisterPoint:
    return RegisterPoint.model_validate({"key": "value", "address": 0} | fields)


def device_registers(value: Any, dtype: DataType, order: ByteOrder, **kwargs: Any) -> list[int]:
    """What a device puts in its registers, encoded by pymodbus's own convert_to_registers."""
    word_order: Literal["big", "little"] = "little" if order in (C, D) else "big"
    words = ModbusClientMixin.convert_to_registers(
        value, PYMODBUS_TYPE[dtype], word_order=word_order, **kwargs
    )
    if order in (B, D):
        words = [int.from_bytes(w.to_bytes(2, "big"), "little") for w in words]
    return words


NUMBERS = {
    DataType.INT16: st.integers(-(2**15), 2**15 - 1),
    DataType.UINT16: st.integers(0, 2**16 - 1),
    DataType.INT32: st.integers(-(2**31), 2**31 - 1),
    DataType.UINT32: st.integers(0, 2**32 - 1),
    DataType.INT64: st.integers(-(2**63), 2**63 - 1),
    DataType.UINT64: st.integers(0, 2**64 - 1),
    DataType.FLOAT32: st.floats(width=32, allow_nan=False),
    DataType.FLOAT64: st.floats(allow_nan=False),
}
EVERY_TYPE_AND_ORDER = [
    pytest.param(dtype, order, id=f"{dtype.value}-{order.value}")
    for dtype in NUMBERS
    for order in ByteOrder
    if REGISTER_COUNT[dtype] > 1 or order in (A, B)
]


@pytest.mark.parametrize(("dtype", "order"), EVERY_TYPE_AND_ORDER)
@given(data=st.data())
def test_every_type_and_order_round_trips_through_pymodbus(dtype, order, data):
    value = data.draw(NUMBERS[dtype])
    registers = device_registers(value, dtype, order)
    assert decode_registers(point(dtype=dtype, order=order), registers) == value


@pytest.mark.parametrize("order", [A, B, C, D])
@pytest.mark.parametrize("encoding", ["ascii", "utf-8", "gb18030"])
@given(text=st.text(min_size=0, max_size=12).filter(lambda t: "\x00" not in t))
def test_strings_round_trip(order, encoding, text):
    try:
        encoded = text.encode(encoding)
    except UnicodeEncodeError:
        return  # not representable in this encoding: nothing a device could send
    length = max(1, (len(encoded) + 1) // 2)
    padded = encoded.ljust(length * 2, b"\x00")
    words = [int.from_bytes(padded[i : i + 2], "big") for i in range(0, len(padded), 2)]
    if order in (C, D):
        words.reverse()
    if order in (B, D):
        words = [int.from_bytes(w.to_bytes(2, "big"), "little") for w in words]
    string = point(dtype="string", length=length, order=order, encoding=encoding)
    assert decode_registers(string, words) == text


def test_bad_text_names_the_point_and_encoding():
    with pytest.raises(ValueError, match=r"value: not ascii text"):
        decode_registers(point(dtype="string", length=1), [0xC3A9])


@pytest.mark.parametrize(
    ("fields", "register", "expected"),
    [
        ({"bit": 0}, 0x0001, True),
        ({"bit": 15}, 0x7FFF, False),
        ({"bit": 1, "width": 2}, 0b0100, 2),
        ({"bit": 8, "width": 4}, 0x0F00, 15),
        ({"bit": 8, "width": 4, "order": "BADC"}, 0x000F, 15),
        ({"bit": 3, "values": {0: "closed", 1: "open"}}, 0x0008, 1),
    ],
)
def test_bit_fields(fields, register, expected):
    value = decode_registers(point(dtype="bits", **fields), [register])
    assert (value, type(value)) == (expected, type(expected))


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"dtype": "float32", "values": {0: "a"}}, "values", "only to integer and bits"),
        ({"dtype": "bits", "bit": 12, "width": 5}, "width", "run past bit 15"),
        ({"dtype": "uint16", "width": 2}, "width", "applies only to a bits point"),
        ({"dtype": "int16", "counter": True}, "counter", "unsigned integer"),
        ({"dtype": "string"}, "length", "is required for a string point"),
        ({"dtype": "uint16", "length": 2}, "length", "applies only to a string point"),
        ({"dtype": "string", "length": 2, "scale": 2}, "scale", "cannot be scaled"),
        ({"dtype": "uint16", "values": {"x": "a"}}, "values", "'x' is not a whole number"),
        ({"dtype": "string", "address": 65535, "length": 2}, "length", "runs past 65535"),
    ],
)
def test_new_fields_are_validated(fields, field, reason):
    with pytest.raises(ValidationError) as caught:
        point(**fields)
    error = caught.value.errors()[0]
    assert (error["loc"][0], reason in error["msg"]) == (field, True), error


# ------------------------------------------------------------------------------ read planning
def at(key: str, address: int, dtype: str = "uint16", table: str = "holding", **extra: Any):
    fields = {"key": key, "address": address, "dtype": dtype, "register_type": table}
    return RegisterPoint.model_validate(fields | extra)


def spans(points: list[RegisterPoint]) -> list[tuple[str, int, int]]:
    return [(b.table.value, b.address, b.count) for b in plan_reads(points)]


def test_contiguous_points_of_one_table_are_one_read():
    points = [at("a", 0, "float32"), at("b", 2, "float32"), at("c", 4), at("d", 5, "bits", bit=0)]
    assert spans(points) == [("holding", 0, 6)]


def test_bit_fields_of_one_register_share_the_read():
    points = [at("a", 1, "bits", bit=0), at("b", 1, "bits", bit=3, width=2), at("c", 0, "int16")]
    assert spans(points) == [("holding", 0, 2)]


def test_gaps_and_tables_split_reads():
    points = [at("a", 0), at("b", 2), at("c", 0, table="input"), at("d", 1, "bool", "coil")]
    assert spans(points) == [("coil", 1, 1), ("holding", 0, 1), ("holding", 2, 1), ("input", 0, 1)]


def test_a_read_never_exceeds_the_protocol_limit():
    points = [at(f"p{i}", i) for i in range(300)]
    blocks = plan_reads(points)
    assert [b.count for b in blocks] == [MAX_REGISTERS_PER_READ, MAX_REGISTERS_PER_READ, 50]
    assert sum(len(b.points) for b in blocks) == 300


# ---------------------------------------------------------------------------- poll decoding
BOARD = RegisterMap.build(
    [
        at("floor", 0, "int16", "input"),
        at("door", 1, "bits", "input", bit=3, values={0: "closed", 1: "open"}),
        at("speed_ms", 2, "uint16", "input", scale=0.01),
        at("fault", 3, "uint16", "input"),
    ],
    fault_codes={"11": "entrapment"},
    fault_key="fault",
)


def test_a_poll_decodes_to_canonical_values_and_the_fault_code():
    decoded = decode_poll(BOARD, [[0xFFFE, 0x0008, 150, 11]])
    assert decoded.values == {"floor": -2, "door": "open", "speed_ms": pytest.approx(1.5)}
    assert decoded.fault_code == 11


@pytest.mark.parametrize(
    ("answers", "key", "reason"),
    [
        ([[0, 0, 0, 99]], "fault", "unknown fault code 99"),
        ([[0, 0, 0]], "floor", "answered 3 of 4 registers"),
    ],
)
def test_bad_answers_name_the_point(answers, key, reason):
    with pytest.raises(RegisterValueError) as caught:
        decode_poll(BOARD, answers)
    assert (caught.value.key, reason in caught.value.reason) == (key, True)


def test_code_outside_a_value_table_is_a_bad_value():
    board = RegisterMap.build([at("mode", 0, "bits", bit=0, width=4, values={0: "normal"})])
    with pytest.raises(RegisterValueError, match="mode: code 3 is not in the point's value"):
        decode_poll(board, [[3]])


@pytest.mark.parametrize("bits", [0x7FC00000, 0x7F800000, 0xFF800000])
def test_non_finite_floats_are_bad_values(bits):
    angle = RegisterMap.build([at("tilt_x_deg", 0, "float32")])
    with pytest.raises(RegisterValueError, match="is not a finite number"):
        decode_poll(angle, [[bits >> 16, bits & 0xFFFF]])


def test_a_counter_is_decoded_unscaled_and_scaled_once_carried():
    gauge = [at("total_mm", 0, "uint32", counter=True, scale=0.2)]
    decoded = decode_poll(RegisterMap.build(gauge), [[0, 62]])
    assert decoded.counters == {"total_mm": 62}
    assert CounterTracker(gauge).values(decoded.counters) == {"total_mm": pytest.approx(12.4)}


def test_counter_is_carried_across_its_wrap_but_not_across_a_reset():
    gauge = [at("total_mm", 0, "uint32", counter=True, scale=0.2)]
    tracker = CounterTracker(gauge)
    top = 2**32
    totals = [tracker.values({"total_mm": raw})["total_mm"] for raw in (top - 2, 3, 10, 4)]
    # top-2 → 3 is a wrap (5 tips); 10 → 4 is a power-loss reset, which the store detects.
    assert totals == pytest.approx([(top - 2) * 0.2, (top + 3) * 0.2, (top + 10) * 0.2, 0.8])
