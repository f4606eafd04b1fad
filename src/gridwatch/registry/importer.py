"""Bulk import: CSV or JSON rows to validated sensors, every problem reported with its row."""

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from gridwatch.domain import Sensor
from gridwatch.registry.problems import FieldProblem, RegistryError, problems_from_validation

MAX_IMPORT_ROWS = 10_000

# CSV is flat; these columns fill the nested parts of the sensor JSON shape.
_LOCATION = {"lat": "lat", "lon": "lon", "address": "address"}
_PROTOCOL = {
    "protocol": "type", "codec": "codec", "host": "host", "port": "port", "unit": "unit",
    "profile": "profile", "poll_interval_s": "interval_s", "transport": "transport",
    "serial_port": "serial_port", "baudrate": "baudrate", "parity": "parity",
    "stopbits": "stopbits", "timeout_s": "timeout_s",
}  # fmt: skip
_CALIBRATION = ("baseline_x_deg", "baseline_y_deg", "mm_per_tip")
_TOP = ("id", "kind", "model", "grid", "interval_s", "owner", "status")
CSV_COLUMNS = frozenset({*_TOP, *_LOCATION, *_PROTOCOL, *_CALIBRATION, "tags"})


def parse_rows(body: bytes, *, content_type: str) -> list[tuple[int, dict[str, Any]]]:
    """Rows numbered from 1, as raw sensor dicts; CSV when the content type says so."""
    rows = _csv_rows(body) if "csv" in content_type else _json_rows(body)
    if len(rows) > MAX_IMPORT_ROWS:
        raise RegistryError(
            [FieldProblem("body", f"{len(rows)} rows; at most {MAX_IMPORT_ROWS} per import")]
        )
    if not rows:
        raise RegistryError([FieldProblem("body", "no rows to import")])
    return rows


def validate_rows(rows: Iterable[tuple[int, dict[str, Any]]]) -> list[Sensor]:
    """Every row as a Sensor, or a RegistryError listing every bad row and field."""
    sensors: list[Sensor] = []
    problems: list[FieldProblem] = []
    first_row_of: dict[str, int] = {}
    for row, raw in rows:
        try:
            sensor = Sensor.model_validate(raw)
        except ValidationError as err:
            problems += problems_from_validation(err, row=row)
            continue
        if sensor.id in first_row_of:
            problems.append(
                FieldProblem("id", f"duplicate id, also in row {first_row_of[sensor.id]}", row)
            )
            continue
        first_row_of[sensor.id] = row
        sensors.append(sensor)
    if problems:
        raise RegistryError(problems)
    return sensors


def _json_rows(body: bytes) -> list[tuple[int, dict[str, Any]]]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RegistryError([FieldProblem("body", f"is not valid JSON ({err})")]) from err
    if isinstance(document, dict):
        document = document.get("sensors")
    if not isinstance(document, list):
        raise RegistryError(
            [FieldProblem("body", 'must be a JSON list of sensors or {"sensors": [...]}')]
        )
    return [(index, raw) for index, raw in enumerate(document, start=1)]


def _csv_rows(body: bytes) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RegistryError([FieldProblem("body", "CSV must be UTF-8")]) from err
    reader = csv.DictReader(io.StringIO(text))
    columns = [name.strip() for name in reader.fieldnames or []]
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    if unknown or "id" not in columns:
        reason = f"unknown columns {unknown}" if unknown else "an 'id' column is required"
        raise RegistryError(
            [FieldProblem("header", f"{reason}; known: {', '.join(sorted(CSV_COLUMNS))}")]
        )
    rows = []
    for index, record in enumerate(reader, start=1):
        cells = {
            (key or "").strip(): value.strip()
            for key, value in record.items()
            if isinstance(value, str) and value.strip()
        }
        rows.append((index, _nest(cells)))
    return rows


def _nest(cells: dict[str, str]) -> dict[str, Any]:
    sensor: dict[str, Any] = {key: cells[key] for key in _TOP if key in cells}
    location = {target: cells[key] for key, target in _LOCATION.items() if key in cells}
    if location:
        sensor["location"] = location
    protocol = {target: cells[key] for key, target in _PROTOCOL.items() if key in cells}
    if protocol:
        sensor["protocol"] = protocol
    calibration = {key: cells[key] for key in _CALIBRATION if key in cells}
    if calibration:
        sensor["calibration"] = calibration
    if "tags" in cells:
        sensor["tags"] = _tags(cells["tags"])
    return sensor


def _tags(text: str) -> dict[str, str] | str:
    # `site=underpass;owner=district` ; a malformed pair is left for validation to report.
    tags: dict[str, str] = {}
    for pair in text.split(";"):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            return text
        tags[key.strip()] = value.strip()
    return tags
