"""InfluxDB line protocol: points to lines, without an object per point (pure).

`<measurement>[,<tag>=<value>...] <field>=<value>[,...] <time in ns>`, escaped as the line
protocol reference says: commas and spaces in measurements; commas, equals signs and spaces in
tag keys, tag values and field keys; double quotes and backslashes in string field values.

What cannot be written, and what happens to it:
- a float that is NaN or infinite, or an integer outside int64: the field is left out (line
  protocol has no spelling for them; a device that sends NaN means "no value");
- a string with a line feed: the field is left out (InfluxDB 1.x would take it inside the
  quotes, but a line must stay one line for whoever splits a body into lines, like the spool);
- a point with no field left: the point is left out (a line needs a field);
- an empty tag value: the tag is left out (line protocol cannot carry one);
- a name (measurement, tag key, tag value, field key) with a line break, with a backslash at its
  end, before a comma, space or equals sign, or (measurement, field key) before a double quote
  (no escape exists for those: the server would unescape them, read another point, or refuse
  the line), a measurement starting with `#` (a comment line),
  a measurement or field key starting with a tab or NUL (InfluxDB 1.x drops them there), an
  empty name, the key `time` (InfluxDB refuses it), or a time outside InfluxDB's range:
  `LineProtocolError`; `format_lines` leaves such points out and can hand them back.

Strings are otherwise any text: InfluxDB 1.x stores NUL, CR, tabs and other control
characters as sent. Lone surrogates (not valid Unicode) become `?` in `encode_body`.
"""

import math
import re
from collections.abc import Iterable
from typing import Final

from gridwatch.domain import Value
from gridwatch.gateway.telemetry.schema import Point, Series

__all__ = [
    "MAX_TIME_NS",
    "MIN_TIME_NS",
    "LineProtocolError",
    "encode_body",
    "escape_field_key",
    "escape_measurement",
    "escape_string",
    "escape_tag",
    "format_line",
    "format_lines",
    "series_prefix",
]

# InfluxDB's own bounds (models.MinNanoTime/MaxNanoTime): int64 minus the sentinel values.
MIN_TIME_NS: Final = -9_223_372_036_854_775_806
MAX_TIME_NS: Final = 9_223_372_036_854_775_806
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

_MEASUREMENT_ESCAPES: Final = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES: Final = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
# A backslash the server would take as an escape, or a line break no escape can protect.
# InfluxDB 1.x unescapes \, \= and \(space) in every name, and \" in measurements and field
# keys too; it keeps any other backslash, \\ included, as written.
_UNWRITABLE_TAG: Final = re.compile(r"\\(?:[, =]|\Z)|[\n\r]")
_UNWRITABLE_NAME: Final = re.compile(r'\\(?:[, ="]|\Z)|[\n\r]')
_RESERVED_KEY: Final = "time"
# InfluxDB 1.x skips tabs and NULs (as whitespace) at the start of a line and of the field set,
# silently renaming a measurement or a first field key that starts with one.
_SKIPPED_LEADING: Final = ("\t", "\x00")

# Caches of escaped names. Series are cached by id(): the cache holds the Series itself, so
# the id cannot be reused by another object while its entry exists, and looking up an id is
# much cheaper than hashing a Series (a tuple of tag tuples) for every point.
_MAX_CACHED: Final = 1 << 18
_prefixes: dict[int, tuple[Series, str]] = {}
_field_keys: dict[str, str] = {}  # raw key -> "escaped=" (the equals sign included)


class LineProtocolError(ValueError):
    """A point that line protocol (or InfluxDB) cannot carry faithfully."""


def escape_measurement(name: str) -> str:
    """The measurement as written in a line; LineProtocolError if it cannot be written."""
    _check_name(name, "measurement", _UNWRITABLE_NAME)
    if name.startswith("#"):
        raise LineProtocolError(f"measurement {name!r} would start a comment line")
    if name.startswith(_SKIPPED_LEADING):
        raise LineProtocolError(f"measurement {name!r} starts with a character InfluxDB drops")
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_tag(name: str, *, what: str = "tag") -> str:
    """A tag key or tag value as written in a line; LineProtocolError if it cannot be."""
    _check_name(name, what, _UNWRITABLE_TAG)
    return name.translate(_KEY_ESCAPES)


def escape_field_key(name: str) -> str:
    """A field key as written in a line; LineProtocolError if it cannot be written."""
    if name == _RESERVED_KEY:
        raise LineProtocolError("InfluxDB refuses the field key 'time'")
    if name.startswith(_SKIPPED_LEADING):
        raise LineProtocolError(f"field key {name!r} starts with a character InfluxDB drops")
    _check_name(name, "field key", _UNWRITABLE_NAME)
    return name.translate(_KEY_ESCAPES)


def escape_string(value: str) -> str:
    """A string field value, quoted and escaped."""
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def series_prefix(series: Series) -> str:
    """`measurement,tag=value,...` of a series, escaped; cached per Series object."""
    cached = _prefixes.get(id(series))
    if cached is not None:
        return cached[1]
    parts = [escape_measurement(series.measurement)]
    for key, value in series.tags:
        if not value:
            continue  # line protocol cannot carry an empty tag value: leave the tag out
        if key == _RESERVED_KEY:
            raise LineProtocolError("InfluxDB refuses the tag key 'time'")
        parts.append(f"{escape_tag(key, what='tag key')}={escape_tag(value, what='tag value')}")
    prefix = ",".join(parts)
    if len(_prefixes) >= _MAX_CACHED:
        _prefixes.clear()  # series replaced over a long uptime; rebuilding is cheap
    _prefixes[id(series)] = (series, prefix)
    return prefix


def format_line(point: Point) -> str | None:
    """The line of one point, None when none of its fields can be written."""
    lines = _format((point,), None, strict=True)
    return lines[0] if lines else None


def format_lines(points: Iterable[Point], *, skipped: list[Point] | None = None) -> list[str]:
    """Lines of the points that can be written; the others go to `skipped` when given."""
    return _format(points, skipped, strict=False)


def _format(points: Iterable[Point], skipped: list[Point] | None, *, strict: bool) -> list[str]:
    """The one formatting loop; inlined per point because a call per point costs ~10 %."""
    lines: list[str] = []
    add_line = lines.append
    prefixes = _prefixes
    keys = _field_keys
    for point in points:
        try:
            series, fields, time_ns = point
            cached = prefixes.get(id(series))
            prefix = cached[1] if cached is not None else series_prefix(series)
            if not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
                _refuse_time(time_ns)
            parts: list[str] = []
            append = parts.append
            # Exact type checks: floats, the common case, cost one; type(True) is bool.
            for name, value in fields.items():
                key = keys.get(name) or _field_key(name)
                if type(value) is float:
                    if value - value == 0.0:  # false for NaN and ±inf: one operation for both
                        append(f"{key}{value!r}")
                elif type(value) is int:
                    if _INT64_MIN <= value <= _INT64_MAX:
                        append(f"{key}{value}i")
                elif type(value) is str:
                    if "\n" not in value:  # a line is one line, for InfluxDB and the spool
                        append(key + escape_string(value))
                elif type(value) is bool:
                    append(f"{key}{'true' if value else 'false'}")
                else:
                    formatted = _format_other(value)
                    if formatted is not None:
                        append(key + formatted)
        except LineProtocolError:
            if strict:
                raise
            parts = []
        if parts:
            add_line(f"{prefix} {','.join(parts)} {time_ns}")
        elif skipped is not None:
            skipped.append(point)
    return lines


def encode_body(lines: Iterable[str]) -> bytes:
    """A /write request body: the lines joined by newlines, UTF-8."""
    # "replace" only matters for lone surrogates (json.loads lets "\ud800" through); one bad
    # string must not make the whole batch unencodable.
    return "\n".join(lines).encode("utf-8", "replace")


def _check_name(name: str, what: str, unwritable: re.Pattern[str]) -> None:
    if not name:
        raise LineProtocolError(f"empty {what}")
    if ("\\" in name or "\n" in name or "\r" in name) and unwritable.search(name):
        raise LineProtocolError(
            f"{what} {name!r} has a line break, or a backslash at its end or where InfluxDB "
            "would read it as an escape; line protocol cannot carry that"
        )


def _refuse_time(time_ns: int) -> None:
    raise LineProtocolError(f"time {time_ns} ns is outside InfluxDB's range")


def _field_key(name: str) -> str:
    """Escape a field key once and remember it (field names are few and reused)."""
    key = escape_field_key(name) + "="
    if len(_field_keys) >= _MAX_CACHED:
        _field_keys.clear()
    _field_keys[name] = key
    return key


def _format_other(value: Value) -> str | None:
    """Subclasses of the value types (enums, numpy floats): formatted as their base type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        whole = int(value)
        return f"{whole}i" if _INT64_MIN <= whole <= _INT64_MAX else None
    if isinstance(value, float):
        real = float(value)
        return repr(real) if math.isfinite(real) else None
    if isinstance(value, str):
        text = str(value)
        return escape_string(text) if "\n" not in text else None
    raise LineProtocolError(f"unsupported field value type {type(value).__name__}")
