"""Device profiles as data: Modbus register maps and vendor MQTT codecs, read from YAML (pure).

The register map's point model and its decoding live with the Modbus adapter
(`gridwatch.adapters.modbus.registers`); a profile adds the device's kind, model and fault table.
"""

import math
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gridwatch.adapters.modbus.registers import (
    REGISTER_COUNT,
    SNAKE_CASE,
    ByteOrder,
    DataType,
    RegisterPoint,
    RegisterType,
    Scalar,
    decode_registers,
)

__all__ = [
    "FAULT_KEY",
    "REGISTER_COUNT",
    "SHIPPED_PROFILES_DIR",
    "ByteOrder",
    "DataType",
    "DeviceProfile",
    "MappingError",
    "MqttMapping",
    "ProfileError",
    "RegisterPoint",
    "RegisterType",
    "apply_mqtt_mapping",
    "check_profile",
    "decode_registers",
    "load_profiles",
]

SHIPPED_PROFILES_DIR = Path(__file__).with_name("device_profiles")
_SNAKE_RE = re.compile(SNAKE_CASE)
# A register point with this key is the device's fault-code register (0: no fault).
FAULT_KEY: Final = "fault"


class _FieldError(ValueError):
    """A cross-field problem found by a model validator, with the field path it concerns."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class MqttMapping(BaseModel):
    """A vendor payload's differences from the canonical one, applied in this order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    renames: dict[str, str] = Field(default_factory=dict)  # vendor field → canonical field
    fault_field: str | None = None  # vendor field holding a code of the fault_codes table
    values: dict[str, dict[str, Scalar]] = Field(default_factory=dict)  # field → vendor → ours
    scales: dict[str, float] = Field(default_factory=dict)  # canonical field → factor

    @field_validator("values", mode="before")
    @classmethod
    def _text_value_keys(cls, values: Any) -> Any:
        if not isinstance(values, Mapping):
            return values
        return {field: _text_keys(table) for field, table in values.items()}

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        seen: dict[str, str] = {}
        for vendor, canonical in self.renames.items():
            if not _SNAKE_RE.match(canonical):
                raise _FieldError(f"renames.{vendor}", f"{canonical!r} is not a snake_case field")
            if canonical in seen:
                raise _FieldError(
                    f"renames.{vendor}", f"{canonical!r} is also the target of {seen[canonical]!r}"
                )
            seen[canonical] = vendor
        for name in (*self.values, *self.scales):
            if not _SNAKE_RE.match(name):
                raise _FieldError(name, "keys are canonical snake_case fields")
        for name, factor in self.scales.items():
            if not math.isfinite(factor) or factor == 0:
                raise _FieldError(f"scales.{name}", "must be a finite number, not 0")
        return self


class DeviceProfile(BaseModel):
    """A device model described as data: a Modbus register map or a vendor MQTT codec."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    kind: str = Field(pattern=SNAKE_CASE)
    model: str = Field(min_length=1)
    description: str = ""
    protocol: Literal["modbus", "mqtt"]
    registers: tuple[RegisterPoint, ...] = ()
    mqtt_mapping: MqttMapping | None = None
    fault_codes: dict[str, str] = Field(default_factory=dict)  # vendor code → canonical name

    @field_validator("fault_codes", mode="before")
    @classmethod
    def _text_fault_keys(cls, codes: Any) -> Any:
        return _text_keys(codes) if isinstance(codes, Mapping) else codes

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.protocol == "modbus" and (not self.registers or self.mqtt_mapping is not None):
            raise _FieldError("registers", "a modbus profile needs registers and no mqtt_mapping")
        if self.protocol == "mqtt" and (self.registers or self.mqtt_mapping is None):
            raise _FieldError("mqtt_mapping", "an mqtt profile needs mqtt_mapping and no registers")
        for code, name in self.fault_codes.items():
            if not _SNAKE_RE.match(name):
                raise _FieldError(f"fault_codes.{code}", f"{name!r} is not a snake_case fault name")
        mapping = self.mqtt_mapping
        if mapping is not None and mapping.fault_field is not None and not self.fault_codes:
            raise _FieldError("fault_codes", "is required when mqtt_mapping.fault_field is set")
        _check_register_map(self.registers)
        _check_fault_register(self.registers, self.fault_codes)
        return self

    def public_dict(self) -> dict[str, Any]:
        """The profile for the API listing, with each point's register count."""
        body = self.model_dump(mode="json", exclude_none=True)
        for point, dumped in zip(self.registers, body["registers"], strict=True):
            dumped["count"] = point.count
        return body


def _text_keys(table: Mapping[Any, Any]) -> dict[Any, Any]:
    """Vendor codes as text: YAML reads `17:` as an int; `on:`/`yes:` as booleans is an error."""
    if any(isinstance(key, bool) for key in table):
        raise ValueError("a key was read as a YAML boolean (on/off/yes/no); quote it")
    return {_vendor_text(key): value for key, value in table.items()}


def _vendor_text(value: Any) -> str:
    """The lookup text of a vendor value: 17, 17.0 and "17" are the same code."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_register_map(points: Sequence[RegisterPoint]) -> None:
    """Refuse duplicate keys and overlapping addresses (bit fields of one register may share)."""
    keys: dict[str, int] = {}
    taken: dict[tuple[RegisterType, int], list[int]] = {}
    for index, point in enumerate(points):
        label = f"registers[{index}] ({point.key})"
        if point.key in keys:
            raise _FieldError(f"{label}.key", f"duplicate of registers[{keys[point.key]}]")
        keys[point.key] = index
        for address in range(point.address, point.address + point.count):
            for other in taken.setdefault((point.register_type, address), []):
                theirs = points[other]
                if point.dtype is theirs.dtype is DataType.BITS and _bits_apart(point, theirs):
                    continue
                where = f"{point.register_type.value} {address}"
                reason = f"overlaps registers[{other}] ({theirs.key}) at {where}"
                raise _FieldError(f"{label}.address", reason)
            taken[(point.register_type, address)].append(index)


def _bits_apart(one: RegisterPoint, other: RegisterPoint) -> bool:
    assert one.bit is not None
    assert other.bit is not None
    return one.bit + one.width <= other.bit or other.bit + other.width <= one.bit


def _check_fault_register(points: Sequence[RegisterPoint], codes: Mapping[str, str]) -> None:
    for index, point in enumerate(points):
        if point.key != FAULT_KEY:
            continue
        label = f"registers[{index}] ({point.key})"
        if point.dtype not in (DataType.UINT16, DataType.UINT32, DataType.INT16, DataType.INT32):
            raise _FieldError(f"{label}.dtype", "a fault register holds an integer code")
        if point.values or point.scale != 1 or point.offset != 0:
            raise _FieldError(label, "a fault register is read through fault_codes, unscaled")
        if not codes:
            raise _FieldError("fault_codes", "is required when a register has the key 'fault'")
        if "0" in codes:
            raise _FieldError("fault_codes.0", "0 means no fault on a fault register")


class MappingError(ValueError):
    """A vendor payload the codec cannot map; names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def apply_mqtt_mapping(profile: DeviceProfile, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a vendor payload into the canonical one; fields the codec does not name pass through."""
    mapping = profile.mqtt_mapping
    if mapping is None:
        raise ValueError(f"profile {profile.name!r} has no mqtt_mapping")
    out: dict[str, Any] = {}
    for vendor, value in payload.items():
        if vendor == mapping.fault_field:
            code = _vendor_text(value)
            if code not in profile.fault_codes:
                raise MappingError(vendor, f"unknown fault code {code!r} for {profile.model}")
            out["fault"], out["code"] = profile.fault_codes[code], code
            continue
        name = mapping.renames.get(vendor, vendor)
        if name in out:
            raise MappingError(name, f"given twice (as {vendor!r} and under another name)")
        out[name] = value
    for name, table in mapping.values.items():
        if name in out:
            text = _vendor_text(out[name])
            if text not in table:
                raise MappingError(name, f"unknown vendor value {text[:40]!r}")
            out[name] = table[text]
    for name, factor in mapping.scales.items():
        value = out.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MappingError(name, f"must be a number to scale, not {value!r}")
        out[name] = value * factor
    return out


class ProfileError(ValueError):
    """A profile file that cannot be used: the file, the profile and the field."""

    def __init__(
        self, path: Path, reason: str, *, profile: str | None = None, field: str = ""
    ) -> None:
        self.path = path
        self.profile = profile
        self.field = field
        self.reason = reason
        where = f"{path}" + (f": profile {profile!r}" if profile else "")
        super().__init__(f"{where}: " + (f"{field}: " if field else "") + reason)


FieldTable = Mapping[str, Mapping[str, Collection[str] | None]]
"""Canonical fields per kind, each with its allowed values (None: any)."""


def load_profiles(
    directory: Path, *, canonical: FieldTable | None = None
) -> dict[str, DeviceProfile]:
    """Every profile in the directory's *.yaml files by name; `canonical` adds a field check."""
    if not directory.is_dir():
        raise ProfileError(directory, "is not a directory")
    profiles: dict[str, DeviceProfile] = {}
    origin: dict[str, Path] = {}
    for path in sorted(directory.glob("*.yaml")):
        for profile in _load_file(path):
            if profile.name in origin:
                raise ProfileError(
                    path, f"duplicate name, also in {origin[profile.name]}", profile=profile.name
                )
            if canonical is not None:
                for field, reason in check_profile(profile, canonical)[:1]:
                    raise ProfileError(path, reason, profile=profile.name, field=field)
            origin[profile.name] = path
            profiles[profile.name] = profile
    return profiles


def check_profile(profile: DeviceProfile, canonical: FieldTable) -> list[tuple[str, str]]:
    """(field, reason) for every name the profile emits that its kind's canonical table lacks."""
    fields = canonical.get(profile.kind)
    if fields is None:
        return [("kind", f"unknown kind {profile.kind!r}")]
    # `ts` is common to every kind: a vendor's time field may be renamed to it.
    known = {*fields, "ts"}
    issues = [
        (f"registers[{i}] ({p.key}).key", f"{p.key!r} is not a canonical {profile.kind} field")
        for i, p in enumerate(profile.registers)
        if p.key not in known
    ]
    faults = fields.get("fault")
    issues += [
        (f"fault_codes.{code}", f"{name!r} is not a canonical fault")
        for code, name in profile.fault_codes.items()
        if faults is not None and name not in faults
    ]
    for index, point in enumerate(profile.registers):
        allowed = fields.get(point.key)
        issues += [
            (
                f"registers[{index}] ({point.key}).values.{code}",
                f"{ours!r} is not an allowed {point.key}",
            )
            for code, ours in point.values.items()
            if allowed is not None and ours not in allowed
        ]
    mapping = profile.mqtt_mapping or MqttMapping()
    named = [(f"renames.{vendor}", name) for vendor, name in mapping.renames.items()]
    named += [(f"values.{name}", name) for name in mapping.values]
    named += [(f"scales.{name}", name) for name in mapping.scales]
    if mapping.fault_field is not None:
        named += [("fault_field", "fault"), ("fault_field", "code")]
    issues += [
        (f"mqtt_mapping.{path}", f"{name!r} is not a canonical {profile.kind} field")
        for path, name in named
        if name not in known
    ]
    for name, table in mapping.values.items():
        allowed = fields.get(name)
        issues += [
            (f"mqtt_mapping.values.{name}.{vendor}", f"{ours!r} is not an allowed {name}")
            for vendor, ours in table.items()
            if allowed is not None and ours not in allowed
        ]
    return issues


def _load_file(path: Path) -> list[DeviceProfile]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ProfileError(path, f"cannot be read ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise ProfileError(path, f"is not valid YAML ({err})") from err
    if not isinstance(document, dict) or not isinstance(document.get("profiles"), list):
        raise ProfileError(path, "must be a mapping with a 'profiles' list")
    return [_parse_profile(path, index, raw) for index, raw in enumerate(document["profiles"])]


def _parse_profile(path: Path, index: int, raw: Any) -> DeviceProfile:
    name = raw.get("name") if isinstance(raw, dict) else None
    label = str(name) if name else f"#{index + 1}"
    try:
        return DeviceProfile.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        cause = first.get("ctx", {}).get("error")
        loc = list(first["loc"])
        if isinstance(cause, _FieldError):
            field, reason = _dotted(loc, raw, cause.path), cause.reason
        else:
            reason = str(cause) if isinstance(cause, ValueError) else first["msg"]
            field = _dotted(loc, raw, "")
        raise ProfileError(path, reason, profile=label, field=field) from err


def _dotted(loc: list[int | str], raw: Any, tail: str) -> str:
    """A pydantic location as `registers[2] (battery_v).scale`, naming the point by its key."""
    parts: list[str] = []
    for position, part in enumerate(loc):
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
            points = raw.get("registers") if isinstance(raw, dict) else None
            if loc[:position] == ["registers"] and isinstance(points, list):
                entry = points[part] if part < len(points) else None
                key = entry.get("key") if isinstance(entry, dict) else None
                parts[-1] += f" ({key})" if key else ""
        else:
            parts.append(part)
    if tail:
        parts.append(tail)
    return ".".join(parts)
