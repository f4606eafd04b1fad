"""Modbus register maps as data: where a value is, how it is encoded, how it is scaled.

Byte/word order names the order of the bytes A B C D (… H), most significant first, as they
arrive in consecutive registers: ABCD big-endian; CDAB word-swapped (pymodbus
`word_order="little"`); BADC bytes swapped within each register; DCBA fully little-endian. For
64-bit types the same names apply per word: CDAB reverses all four words. A 16-bit type spans one
register and has no word order, so only ABCD and BADC (bytes swapped) are accepted for it.

Decoding uses pymodbus's own `convert_from_registers`; the one thing it does not do, swapping the
two bytes inside each register (BADC, DCBA), is done on the words before it.
"""

import math
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pymodbus.client.mixin import ModbusClientMixin

SNAKE_CASE: Final = r"^[a-z][a-z0-9_]*$"
Scalar = str | int | float | bool
_DATATYPE = ModbusClientMixin.DATATYPE


class RegisterType(StrEnum):
    """The four Modbus data tables."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"


class DataType(StrEnum):
    """How a point's registers are read.

    `bits` is a field of `width` bits from bit `bit` of one 16-bit register (a flag when the
    width is 1); `string` is `length` registers of text, two bytes each, NUL-padded.
    """

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BOOL = "bool"
    BITS = "bits"
    STRING = "string"


class ByteOrder(StrEnum):
    """Byte and word order of a multi-byte value (see the module docstring)."""

    ABCD = "ABCD"
    DCBA = "DCBA"
    BADC = "BADC"
    CDAB = "CDAB"


REGISTER_COUNT: Mapping[DataType, int] = {
    DataType.INT16: 1, DataType.UINT16: 1, DataType.INT32: 2, DataType.UINT32: 2,
    DataType.INT64: 4, DataType.UINT64: 4, DataType.FLOAT32: 2, DataType.FLOAT64: 4,
    DataType.BOOL: 1, DataType.BITS: 1,
}  # fmt: skip
"""Registers per value; a string's count is its `length`."""

PYMODBUS_TYPE: Mapping[DataType, Any] = {
    DataType.INT16: _DATATYPE.INT16, DataType.UINT16: _DATATYPE.UINT16,
    DataType.INT32: _DATATYPE.INT32, DataType.UINT32: _DATATYPE.UINT32,
    DataType.INT64: _DATATYPE.INT64, DataType.UINT64: _DATATYPE.UINT64,
    DataType.FLOAT32: _DATATYPE.FLOAT32, DataType.FLOAT64: _DATATYPE.FLOAT64,
    DataType.STRING: _DATATYPE.STRING,
}  # fmt: skip
"""The pymodbus conversion type of each data type that is a whole number of registers."""

_ONE_BIT_TABLES = frozenset({RegisterType.COIL, RegisterType.DISCRETE})
_WORD_SWAPPED = frozenset({ByteOrder.CDAB, ByteOrder.DCBA})
_BYTE_SWAPPED = frozenset({ByteOrder.BADC, ByteOrder.DCBA})
_INTEGERS = frozenset(
    {DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.INT64,
     DataType.UINT64, DataType.BITS}
)  # fmt: skip
_UNSIGNED_BITS: Final = {DataType.UINT16: 16, DataType.UINT32: 32, DataType.UINT64: 64}
MAX_REGISTERS_PER_READ: Final = 125  # the protocol limit of one read (and so of a string)


class RegisterPoint(BaseModel):
    """One value in a Modbus register map: where it is, how to read it, how to scale it."""

    # Field order matters: each validator sees the fields declared before it.
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=SNAKE_CASE)
    register_type: RegisterType = RegisterType.HOLDING
    dtype: DataType
    address: int = Field(ge=0, le=0xFFFF)
    length: int | None = Field(default=None, ge=1, le=MAX_REGISTERS_PER_READ, validate_default=True)
    order: ByteOrder = ByteOrder.ABCD
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    bit: int | None = Field(default=None, ge=0, le=15, validate_default=True)
    width: int = Field(default=1, ge=1, le=16)
    values: dict[str, Scalar] = Field(default_factory=dict)
    counter: bool = False
    encoding: Literal["ascii", "utf-8", "gb18030"] = "ascii"

    @property
    def count(self) -> int:
        """Number of registers (or coils) the point spans."""
        if self.dtype is DataType.STRING:
            assert self.length is not None  # guaranteed by the model
            return self.length
        return REGISTER_COUNT[self.dtype]

    @field_validator("dtype")
    @classmethod
    def _dtype_fits_table(cls, dtype: DataType, info: ValidationInfo) -> DataType:
        one_bit = info.data.get("register_type") in _ONE_BIT_TABLES
        if one_bit != (dtype is DataType.BOOL):
            raise ValueError("coil and discrete points are bool; registers use bits for a flag")
        return dtype

    @field_validator("address")
    @classmethod
    def _fits_address_space(cls, address: int, info: ValidationInfo) -> int:
        dtype = info.data.get("dtype")
        span = REGISTER_COUNT.get(dtype, 1) if isinstance(dtype, DataType) else 1
        if isinstance(dtype, DataType) and address + span - 1 > 0xFFFF:
            raise ValueError(f"{dtype.value} at {address} runs past address 65535")
        return address

    @field_validator("length")
    @classmethod
    def _length_only_for_strings(cls, length: int | None, info: ValidationInfo) -> int | None:
        is_string = info.data.get("dtype") is DataType.STRING
        if is_string and length is None:
            raise ValueError("is required for a string point (registers, 1-125)")
        if not is_string and length is not None:
            raise ValueError("applies only to a string point")
        address = info.data.get("address")
        if length is not None and address is not None and address + length - 1 > 0xFFFF:
            raise ValueError(f"a string of {length} registers at {address} runs past 65535")
        return length

    @field_validator("order")
    @classmethod
    def _order_fits_width(cls, order: ByteOrder, info: ValidationInfo) -> ByteOrder:
        dtype = info.data.get("dtype")
        if dtype is DataType.BOOL and order is not ByteOrder.ABCD:
            raise ValueError("a single bit has no byte order")
        # CDAB/DCBA on one register would alias ABCD/BADC; refusing them catches a wrong map.
        one_register = isinstance(dtype, DataType) and REGISTER_COUNT.get(dtype) == 1
        if one_register and order in _WORD_SWAPPED:
            assert isinstance(dtype, DataType)
            raise ValueError(f"{dtype.value} spans one register: only ABCD or BADC apply")
        return order

    @field_validator("scale", "offset")
    @classmethod
    def _finite_numeric_scaling(cls, value: float, info: ValidationInfo) -> float:
        if not math.isfinite(value) or (info.field_name == "scale" and value == 0):
            raise ValueError("must be a finite number" + (", not 0" if value == 0 else ""))
        unscaled = info.data.get("dtype") in (DataType.BOOL, DataType.BITS, DataType.STRING)
        if unscaled and value != (1.0 if info.field_name == "scale" else 0.0):
            raise ValueError("bool, bits and string points cannot be scaled")
        return value

    @field_validator("bit")
    @classmethod
    def _bit_only_for_bits(cls, bit: int | None, info: ValidationInfo) -> int | None:
        is_bits = info.data.get("dtype") is DataType.BITS
        if is_bits and bit is None:
            raise ValueError("is required for a bits point (0-15)")
        if not is_bits and bit is not None:
            raise ValueError("applies only to a bits point")
        return bit

    @field_validator("width")
    @classmethod
    def _width_fits_register(cls, width: int, info: ValidationInfo) -> int:
        bit = info.data.get("bit")
        if width != 1 and info.data.get("dtype") is not DataType.BITS:
            raise ValueError("applies only to a bits point")
        if bit is not None and bit + width > 16:
            raise ValueError(f"{width} bits from bit {bit} run past bit 15")
        return width

    @field_validator("values", mode="before")
    @classmethod
    def _text_codes(cls, values: Any, info: ValidationInfo) -> Any:
        if not isinstance(values, Mapping):
            return values
        if values and info.data.get("dtype") not in _INTEGERS:
            raise ValueError("a value table applies only to integer and bits points")
        if any(isinstance(code, bool) for code in values):
            raise ValueError("a key was read as a YAML boolean (on/off/yes/no); quote it")
        codes = {str(code).strip(): meaning for code, meaning in values.items()}
        for code in codes:
            try:
                int(code, 0)
            except ValueError:
                raise ValueError(f"code {code!r} is not a whole number") from None
        return {str(int(code, 0)): meaning for code, meaning in codes.items()}

    @field_validator("counter")
    @classmethod
    def _counter_is_unsigned(cls, counter: bool, info: ValidationInfo) -> bool:
        if counter and info.data.get("dtype") not in _UNSIGNED_BITS:
            raise ValueError("a counter is an unsigned integer (uint16, uint32 or uint64)")
        if counter and info.data.get("values"):
            raise ValueError("a counter has no value table")
        return counter

    @property
    def counter_modulus(self) -> int:
        """Where a counter point wraps to zero (2^16, 2^32 or 2^64)."""
        return 1 << _UNSIGNED_BITS[self.dtype]


def decode_registers(point: RegisterPoint, registers: Sequence[int]) -> Scalar:
    """Decode the point's raw registers (or coil bits) honouring order, scale and offset.

    A value table is not applied here (see `lookup_value`).
    """
    value = raw_value(point, registers)
    if (point.scale == 1 and point.offset == 0) or not isinstance(value, int | float):
        return value
    return value * point.scale + point.offset


def raw_value(point: RegisterPoint, registers: Sequence[int]) -> Scalar:
    """The point's value as the device holds it: byte and word order applied, not scaled."""
    if len(registers) != point.count:
        raise ValueError(f"{point.key}: needs {point.count} register(s), got {len(registers)}")
    top = 1 if point.dtype is DataType.BOOL else 0xFFFF
    if any(not 0 <= word <= top for word in registers):
        raise ValueError(f"{point.key}: register values must be 0..{top}, got {list(registers)}")
    if point.dtype is DataType.BOOL:
        return bool(registers[0])
    words = list(registers)
    if point.order in _BYTE_SWAPPED:
        words = [(word >> 8) | (word & 0xFF) << 8 for word in words]
    if point.dtype is DataType.BITS:
        assert point.bit is not None  # guaranteed by the model
        field = words[0] >> point.bit & ((1 << point.width) - 1)
        return bool(field) if point.width == 1 and not point.values else field
    word_order: Literal["big", "little"] = "little" if point.order in _WORD_SWAPPED else "big"
    if point.dtype is DataType.STRING:
        try:
            text = ModbusClientMixin.convert_from_registers(
                words, _DATATYPE.STRING, word_order=word_order, string_encoding=point.encoding
            )
        except UnicodeDecodeError as err:
            raise ValueError(f"{point.key}: not {point.encoding} text ({err.reason})") from err
        assert isinstance(text, str)
        return text
    value = ModbusClientMixin.convert_from_registers(
        words, PYMODBUS_TYPE[point.dtype], word_order=word_order
    )
    assert isinstance(value, int | float)  # one value of a numeric type
    return value


class RegisterValueError(ValueError):
    """A decoded value the map cannot turn into a reading; names the point and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


def lookup_value(point: RegisterPoint, raw: Scalar) -> Scalar:
    """The point's meaning for a raw code (its value table), or the value itself."""
    if not point.values:
        return raw
    meaning = point.values.get(str(int(raw)))
    if meaning is None:
        raise RegisterValueError(point.key, f"code {raw!r} is not in the point's value table")
    return meaning
