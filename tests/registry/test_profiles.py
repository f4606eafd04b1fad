"""Device profiles: register decoding, validation of every field, vendor MQTT codecs."""

import copy
import json
import math
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.adapters.codecs import canonical_fields, decode
from gridwatch.domain import Channel
from gridwatch.registry.profiles import (
    REGISTER_COUNT,
    SHIPPED_PROFILES_DIR,
    ByteOrder,
    DataType,
    DeviceProfile,
    MappingError,
    ProfileError,
    RegisterPoint,
    apply_mqtt_mapping,
    check_profile,
    decode_registers,
    load_profiles,
)

DATA = Path(__file__).parent / "data"

# Canonical fields per kind with their allowed values, as the gateway would pass them in.
CANONICAL = canonical_fields()


def point(dtype: DataType, order: ByteOrder = ByteOrder.ABCD, **extra: Any) -> RegisterPoint:
    table = "coil" if dtype is DataType.BOOL else "holding"
    fields = {"key": "value", "register_type": table, "dtype": dtype, "address": 0, "order": order}
    return RegisterPoint.model_validate(fields | extra)


@pytest.fixture(scope="module")
def shipped() -> dict[str, DeviceProfile]:
    return load_profiles(SHIPPED_PROFILES_DIR, canonical=CANONICAL)


# ------------------------------------------------------------------------------------ decoding
A, C, B, D = ByteOrder.ABCD, ByteOrder.CDAB, ByteOrder.BADC, ByteOrder.DCBA
F32 = struct.unpack(">f", bytes.fromhex("42F6E979"))[0]  # 123.456 as float32


@pytest.mark.parametrize(
    ("dtype", "order", "registers", "expected"),
    [
        (DataType.INT16, A, [0xFFFE], -2),
        (DataType.INT16, B, [0xFEFF], -2),
        (DataType.UINT16, A, [0x1234], 0x1234),
        (DataType.UINT16, B, [0x3412], 0x1234),
        (DataType.INT32, A, [0xFFFF, 0xFFFE], -2),
        (DataType.INT32, C, [0xFFFE, 0xFFFF], -2),
        (DataType.INT32, B, [0xFFFF, 0xFEFF], -2),
        (DataType.INT32, D, [0xFEFF, 0xFFFF], -2),
        (DataType.UINT32, A, [0x1234, 0x5678], 0x12345678),
        (DataType.UINT32, C, [0x5678, 0x1234], 0x12345678),
        (DataType.UINT32, B, [0x3412, 0x7856], 0x12345678),
        (DataType.UINT32, D, [0x7856, 0x3412], 0x12345678),
        (DataType.INT64, A, [0xFEFD, 0xFCFB, 0xFAF9, 0xF8F8], -0x0102030405060708),
        (DataType.INT64, C, [0xF8F8, 0xFAF9, 0xFCFB, 0xFEFD], -0x0102030405060708),
        (DataType.INT64, B, [0xFDFE, 0xFBFC, 0xF9FA, 0xF8F8], -0x0102030405060708),
        (DataType.INT64, D, [0xF8F8, 0xF9FA, 0xFBFC, 0xFDFE], -0x0102030405060708),
        (DataType.UINT64, A, [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
        (DataType.UINT64, C, [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
        (DataType.UINT64, B, [0x0201, 0x0403, 0x0605, 0x0807], 0x0102030405060708),
        (DataType.UINT64, D, [0x0807, 0x0605, 0x0403, 0x0201], 0x0102030405060708),
        (DataType.FLOAT32, A, [0x42F6, 0xE979], F32),
        (DataType.FLOAT32, C, [0xE979, 0x42F6], F32),
        (DataType.FLOAT32, B, [0xF642, 0x79E9], F32),
        (DataType.FLOAT32, D, [0x79E9, 0xF642], F32),
        (DataType.FLOAT64, A, [0x405E, 0xDD2F, 0x1A9F, 0xBE77], 123.456),
        (DataType.FLOAT64, C, [0xBE77, 0x1A9F, 0xDD2F, 0x405E], 123.456),
        (DataType.FLOAT64, B, [0x5E40, 0x2FDD, 0x9F1A, 0x77BE], 123.456),
        (DataType.FLOAT64, D, [0x77BE, 0x9F1A, 0x2FDD, 0x5E40], 123.456),
    ],
)
def test_decode_known_byte_patterns(dtype, order, registers, expected):
    value = decode_registers(point(dtype, order), registers)
    assert (value, type(value)) == (expected, type(expected))


@pytest.mark.parametrize(
    ("order", "register", "bit", "expected"),
    [(A, 0x0100, 8, True), (A, 0x0100, 0, False), (B, 0x0001, 8, True), (B, 0x8000, 7, True)],
)
def test_decode_bits(order, register, bit, expected):
    assert decode_registers(point(DataType.BITS, order, bit=bit), [register]) is expected


@pytest.mark.parametrize(("raw", "expected"), [(1, True), (0, False)])
def test_decode_coil(raw, expected):
    assert decode_registers(point(DataType.BOOL), [raw]) is expected


@pytest.mark.parametrize(
    ("dtype", "raw", "scale", "offset", "expected"),
    [
        (DataType.UINT16, [1234], 0.01, 0.0, 12.34),
        (DataType.INT16, [0xFF9C], 0.1, 0.0, -10.0),  # -100 tenths
        (DataType.UINT16, [650], 0.1, -40.0, 25.0),  # a -40 °C based temperature
        (DataType.UINT32, [0, 5], 0.2, 0.0, 1.0),
    ],
)
def test_scale_and_offset(dtype, raw, scale, offset, expected):
    value = decode_registers(point(dtype, scale=scale, offset=offset), raw)
    assert value == pytest.approx(expected)


def registers_for(data: bytes, order: ByteOrder) -> list[int]:
    """Registers a device sends for big-endian `data`, built without the code under test."""
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if order in (ByteOrder.CDAB, ByteOrder.DCBA):
        words.reverse()
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        words = [int.from_bytes(w.to_bytes(2, "big"), "little") for w in words]
    return words


FORMATS = {
    DataType.INT16: (">h", st.integers(-(2**15), 2**15 - 1)),
    DataType.UINT16: (">H", st.integers(0, 2**16 - 1)),
    DataType.INT32: (">i", st.integers(-(2**31), 2**31 - 1)),
    DataType.UINT32: (">I", st.integers(0, 2**32 - 1)),
    DataType.INT64: (">q", st.integers(-(2**63), 2**63 - 1)),
    DataType.UINT64: (">Q", st.integers(0, 2**64 - 1)),
    DataType.FLOAT32: (">f", st.floats(width=32, allow_nan=False)),
    DataType.FLOAT64: (">d", st.floats(allow_nan=False)),
}
ROUND_TRIPS = [
    (dtype, order)
    for dtype in FORMATS
    for order in ByteOrder
    if REGISTER_COUNT[dtype] > 1 or order in (ByteOrder.ABCD, ByteOrder.BADC)
]


@pytest.mark.parametrize(("dtype", "order"), ROUND_TRIPS)
@given(data=st.data())
def test_round_trip_through_struct(dtype, order, data):
    fmt, values = FORMATS[dtype]
    value = data.draw(values)
    decoded = decode_registers(point(dtype, order), registers_for(struct.pack(fmt, value), order))
    assert decoded == value


def test_round_trip_keeps_nan():
    data = struct.pack(">f", math.nan)
    value = decode_registers(point(DataType.FLOAT32), registers_for(data, A))
    assert isinstance(value, float)
    assert math.isnan(value)


@pytest.mark.parametrize(
    ("dtype", "registers", "message"),
    [
        (DataType.UINT32, [1], "value: needs 2 register\\(s\\), got 1"),
        (DataType.UINT16, [0x10000], "register values must be 0..65535"),
        (DataType.UINT16, [-1], "register values must be 0..65535"),
        (DataType.BOOL, [2], "register values must be 0..1"),
    ],
)
def test_decode_refuses_wrong_input(dtype, registers, message):
    with pytest.raises(ValueError, match=message):
        decode_registers(point(dtype), registers)


# ---------------------------------------------------------------------------------- validation
CASES = yaml.safe_load((DATA / "profile_errors.yaml").read_text(encoding="utf-8"))


def case_profile(case: dict[str, Any]) -> dict[str, Any]:
    """The case's base profile with its change applied."""
    profile: dict[str, Any] = copy.deepcopy(CASES["bases"][case["base"]])
    if "point" in case:
        profile["registers"][case["point"]].update(case["change"])
        return profile
    for key, value in case["change"].items():
        merge = key == "mqtt_mapping"
        profile[key] = profile[key] | value if merge else value
    return profile


def cases(group: str) -> list[Any]:
    return [pytest.param(case, id=case["id"]) for case in CASES[group]]


def load_one(tmp_path: Path, profile: dict[str, Any], **kwargs: Any) -> dict[str, DeviceProfile]:
    text = yaml.safe_dump({"profiles": [profile]}, sort_keys=False)
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    return load_profiles(tmp_path, **kwargs)


@pytest.mark.parametrize("case", cases("invalid"))
def test_every_validation_error_names_file_profile_and_field(tmp_path, case):
    with pytest.raises(ProfileError) as caught:
        load_one(tmp_path, case_profile(case))
    error, path = caught.value, tmp_path / "p.yaml"
    assert (error.path, error.profile, error.field) == (path, case["base"], case["field"])
    assert error.reason.startswith(case["reason"]), error.reason
    assert str(error).startswith(f"{path}: profile {case['base']!r}: {case['field']}: ")


@pytest.mark.parametrize("case", cases("not_canonical"))
def test_canonical_cross_check(tmp_path, case):
    profile = case_profile(case)
    assert load_one(tmp_path, profile)  # valid on its own
    with pytest.raises(ProfileError) as caught:
        load_one(tmp_path, profile, canonical=CANONICAL)
    assert (caught.value.field, caught.value.reason) == (case["field"], case["reason"])


def test_unnamed_profile_is_named_by_position(tmp_path):
    profile = copy.deepcopy(CASES["bases"]["gauge"])
    del profile["name"]
    with pytest.raises(ProfileError) as caught:
        load_one(tmp_path, profile)
    assert (caught.value.profile, caught.value.field) == ("#1", "name")


def register_map(*points: tuple[str, int, str, int | None]) -> dict[str, Any]:
    """The gauge profile with points p0, p1 … given as (table, address, dtype, bit)."""
    registers = [
        {"key": f"p{i}", "register_type": table, "address": address, "dtype": dtype}
        | ({"bit": bit} if bit is not None else {})
        for i, (table, address, dtype, bit) in enumerate(points)
    ]
    base: dict[str, Any] = CASES["bases"]["gauge"]
    return base | {"registers": registers}


@pytest.mark.parametrize(
    "points",
    [
        pytest.param([("holding", 0, "uint16", None), ("input", 0, "uint16", None)], id="tables"),
        pytest.param([("holding", 0, "bits", 0), ("holding", 0, "bits", 1)], id="distinct-bits"),
        pytest.param([("coil", 0, "bool", None), ("coil", 1, "bool", None)], id="adjacent-coils"),
        pytest.param([("input", 0, "int64", None), ("input", 4, "int64", None)], id="adjacent"),
    ],
)
def test_points_that_do_not_overlap(points):
    assert len(DeviceProfile.model_validate(register_map(*points)).registers) == 2


@pytest.mark.parametrize(
    ("points", "where"),
    [
        pytest.param([("holding", 0, "bits", 3), ("holding", 0, "bits", 3)], 0, id="same-bit"),
        pytest.param([("holding", 0, "uint16", None), ("holding", 0, "bits", 1)], 0, id="bits"),
        pytest.param([("input", 0, "float64", None), ("input", 3, "uint16", None)], 3, id="tail"),
    ],
)
def test_points_that_overlap(points, where):
    table = points[0][0]
    message = rf"registers\[1\] \(p1\)\.address: overlaps registers\[0\] \(p0\) at {table} {where}"
    with pytest.raises(ValueError, match=message):
        DeviceProfile.model_validate(register_map(*points))


GAUGE_FILE = yaml.safe_dump({"profiles": [CASES["bases"]["gauge"]]})


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"a.yaml": "profiles: [\n"}, "is not valid YAML"),
        ({"a.yaml": "- just a list\n"}, "must be a mapping with a 'profiles' list"),
        ({"a.yaml": GAUGE_FILE, "b.yaml": GAUGE_FILE}, "duplicate name, also in .*a.yaml"),
    ],
)
def test_file_level_errors(tmp_path, files, reason):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError, match=reason):
        load_profiles(tmp_path)


def test_missing_directory_is_refused(tmp_path):
    with pytest.raises(ProfileError, match="is not a directory"):
        load_profiles(tmp_path / "nowhere")


# ------------------------------------------------------------------------- shipped profiles
def test_shipped_profiles_are_canonical(shipped):
    assert sorted(shipped) == [
        "ai-camera",
        "elevator-board",
        "inclinometer-2axis",
        "tipping-bucket-0.2",
        "traction-controller",
    ]
    assert all(check_profile(profile, CANONICAL) == [] for profile in shipped.values())


@pytest.mark.parametrize(
    ("name", "registers", "expected"),
    [
        (
            "tipping-bucket-0.2",
            {"total_mm": [0x0001, 0x0000], "battery_v": [1234]},
            {"total_mm": 13107.2, "battery_v": 12.34},
        ),
        (
            "inclinometer-2axis",
            {"tilt_x_deg": [0x0000, 0x3FC0], "tilt_y_deg": [0x0000, 0xBF00], "wind_ms": [139]},
            {"tilt_x_deg": 1.5, "tilt_y_deg": -0.5, "wind_ms": 13.9},
        ),
    ],
)
def test_shipped_register_maps_decode_to_canonical_telemetry(shipped, name, registers, expected):
    profile = shipped[name]
    values = {p.key: decode_registers(p, registers[p.key]) for p in profile.registers}
    assert values == pytest.approx(expected)
    reading = decode(
        sensor_id="S-1",
        kind=profile.kind,
        channel=Channel.TELEMETRY,
        payload=json.dumps(values).encode(),
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert reading.values == pytest.approx(expected)


@pytest.mark.parametrize(
    ("name", "channel", "vendor", "canonical"),
    [
        (
            "traction-controller",
            Channel.TELEMETRY,
            {
                "flr": 5,
                "dir": 1,
                "door": 0,
                "run": True,
                "dz": True,
                "mode": 0,
                "load": True,
                "spd": 150,
            },
            {
                "floor": 5,
                "direction": "up",
                "door": "closed",
                "moving": True,
                "in_door_zone": True,
                "mode": "normal",
                "occupied": True,
                "speed_ms": 1.5,
            },
        ),
        (
            "traction-controller",
            Channel.EVENT,
            {"err": 17, "ts": 1767225600},
            {"fault": "entrapment", "code": "17", "ts": 1767225600},
        ),
        (
            "traction-controller",
            Channel.EVENT,
            {"err": 41.0},
            {"fault": "power_loss", "code": "41"},
        ),
        (
            "ai-camera",
            Channel.EVENT,
            {"alarm_type": "garbage_exposed", "score": 87, "img": "https://cam/1.jpg", "count": 3},
            {
                "event": "exposed_garbage",
                "confidence": 0.87,
                "snapshot_url": "https://cam/1.jpg",
                "object_count": 3,
            },
        ),
    ],
)
def test_vendor_payloads_map_to_canonical_ones(shipped, name, channel, vendor, canonical):
    profile = shipped[name]
    mapped = apply_mqtt_mapping(profile, vendor)
    assert mapped == pytest.approx(canonical)
    reading = decode(
        sensor_id="S-1",
        kind=profile.kind,
        channel=channel,
        payload=json.dumps(mapped).encode(),
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert set(reading.values) == set(canonical) - {"ts"}


@pytest.mark.parametrize(
    ("name", "vendor", "field", "reason"),
    [
        (
            "traction-controller",
            {"err": 99},
            "err",
            "unknown fault code '99' for traction-controller",
        ),
        ("traction-controller", {"dir": 7}, "direction", "unknown vendor value '7'"),
        (
            "traction-controller",
            {"spd": "fast"},
            "speed_ms",
            "must be a number to scale, not 'fast'",
        ),
        ("traction-controller", {"spd": True}, "speed_ms", "must be a number to scale, not True"),
        ("traction-controller", {"flr": 2, "floor": 3}, "floor", "given twice"),
        ("ai-camera", {"alarm_type": "ufo"}, "event", "unknown vendor value 'ufo'"),
    ],
)
def test_unmappable_vendor_payloads_name_the_field(shipped, name, vendor, field, reason):
    with pytest.raises(MappingError) as caught:
        apply_mqtt_mapping(shipped[name], vendor)
    assert (caught.value.field, caught.value.reason[: len(reason)]) == (field, reason)


def test_modbus_profiles_have_no_mqtt_mapping(shipped):
    with pytest.raises(ValueError, match=r"'tipping-bucket-0\.2' has no mqtt_mapping"):
        apply_mqtt_mapping(shipped["tipping-bucket-0.2"], {})


def test_public_dict_is_json_with_register_counts(shipped):
    body = shipped["inclinometer-2axis"].public_dict()
    assert json.loads(json.dumps(body)) == body
    assert [(p["key"], p["address"], p["count"], p["order"]) for p in body["registers"]] == [
        ("tilt_x_deg", 0, 2, "CDAB"),
        ("tilt_y_deg", 2, 2, "CDAB"),
        ("wind_ms", 4, 1, "ABCD"),
    ]
    assert shipped["traction-controller"].public_dict()["fault_codes"]["17"] == "entrapment"
