"""Grid hierarchy (district → street → community → grid unit): codes, polygons, location checks.

Pure: no I/O beyond reading a GeoJSON file. Unit-grid codes (GB/T 30428.1) are 15 digits:
6-digit administrative division (GB/T 2260) + 3-digit street + 3-digit community + 3-digit grid
sequence. Legacy codes (CJ/T 213-2005) are 14 digits, 6+3+3+2: the same 12-digit community
prefix (as in the national statistical division codes) and a 2-digit grid sequence. Upper levels
are identified by the prefixes: 6 digits (district), 9 (street), 12 (community).

Point-in-polygon is planar ray casting on GeoJSON [lon, lat]: exact enough for city grid units,
not meant for polygons crossing the antimeridian or a pole. A point exactly on an edge may fall
either side.
"""

import itertools
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeAlias

DEMO_GRID_PATH = Path(__file__).with_name("grid_demo.geojson")


class GridLevel(StrEnum):
    """Levels of the grid hierarchy, top down."""

    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"
    GRID = "grid"


_LEVEL_BY_LENGTH = {
    6: GridLevel.DISTRICT,
    9: GridLevel.STREET,
    12: GridLevel.COMMUNITY,
    14: GridLevel.GRID,
    15: GridLevel.GRID,
}
# GB/T 2260 province codes run from 11 (Beijing) to 82 (Macao).
_PROVINCES = range(11, 83)


class GridError(ValueError):
    """A grid code, unit or geometry that cannot be used; names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class GridCodeError(GridError):
    """A malformed grid code."""


@dataclass(frozen=True, slots=True)
class GridCode:
    """A parsed grid code: its level and the codes of every level above it."""

    code: str
    level: GridLevel
    district: str
    street: str | None
    community: str | None
    sequence: str | None

    @property
    def legacy(self) -> bool:
        """Tell whether this is a 14-digit (CJ/T 213) unit-grid code."""
        return len(self.code) == 14

    @property
    def parent(self) -> str | None:
        """The code one level up, None for a district."""
        return self.ancestors[0] if self.ancestors else None

    @property
    def ancestors(self) -> tuple[str, ...]:
        """Codes of the levels above, nearest first (the routing fallback order)."""
        chain = (self.community, self.street, self.district)
        return tuple(code for code in chain if code is not None and code != self.code)

    def widened(self) -> str:
        """The 15-digit form: a legacy 2-digit sequence padded to 3 digits, else unchanged."""
        if self.legacy and self.community is not None and self.sequence is not None:
            return f"{self.community}0{self.sequence}"
        return self.code


def parse_grid_code(code: object, *, field: str = "code") -> GridCode:
    """Parse a 15- or 14-digit unit-grid code, or a 6/9/12-digit upper-level code."""
    if not isinstance(code, str):
        raise GridCodeError(field, f"must be a string of digits, not {type(code).__name__}")
    for position, char in enumerate(code, start=1):
        if not ("0" <= char <= "9"):
            raise GridCodeError(field, f"must contain only digits; {char!r} at position {position}")
    level = _LEVEL_BY_LENGTH.get(len(code))
    if level is None:
        raise GridCodeError(
            field,
            "must have 15 digits (14 for legacy codes; 6, 9 or 12 for a district, street or "
            f"community), not {len(code)}",
        )
    if int(code[:2]) not in _PROVINCES:
        raise GridCodeError(field, f"digits 1-2 ({code[:2]}) are not a GB/T 2260 province (11-82)")
    # Sequences start at 1 at every level below the district; all zeros means "none".
    for start, end, part in ((6, 9, "street"), (9, 12, "community"), (12, len(code), "grid")):
        if len(code) > start and not code[start:end].strip("0"):
            raise GridCodeError(
                field, f"{part} part (digits {start + 1}-{end}) must not be {code[start:end]}"
            )
    return GridCode(
        code=code,
        level=level,
        district=code[:6],
        street=code[:9] if len(code) >= 9 else None,
        community=code[:12] if len(code) >= 12 else None,
        sequence=code[12:] if len(code) > 12 else None,
    )


# ---------------------------------------------------------------------------------- geometry
Position: TypeAlias = tuple[float, float]  # (lon, lat), GeoJSON order
Ring: TypeAlias = tuple[Position, ...]


@dataclass(frozen=True, slots=True)
class Polygon:
    """A GeoJSON Polygon: exterior ring first, then holes; rings are closed."""

    rings: tuple[Ring, ...]
    bbox: tuple[float, float, float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.rings or len(self.rings[0]) < 4:
            raise GridError("coordinates", "a polygon needs an exterior ring of 4+ positions")
        lons = [lon for lon, _ in self.rings[0]]
        lats = [lat for _, lat in self.rings[0]]
        object.__setattr__(self, "bbox", (min(lons), min(lats), max(lons), max(lats)))

    def contains(self, lon: float, lat: float) -> bool:
        """Tell whether the point is inside the exterior ring and outside every hole."""
        west, south, east, north = self.bbox
        if not (west <= lon <= east and south <= lat <= north):
            return False
        return _in_ring(self.rings[0], lon, lat) and not any(
            _in_ring(hole, lon, lat) for hole in self.rings[1:]
        )

    def to_geojson(self) -> dict[str, Any]:
        """The GeoJSON geometry object."""
        return {"type": "Polygon", "coordinates": [[list(p) for p in r] for r in self.rings]}


@dataclass(frozen=True, slots=True)
class MultiPolygon:
    """A GeoJSON MultiPolygon: the point is inside when any part contains it."""

    polygons: tuple[Polygon, ...]

    def contains(self, lon: float, lat: float) -> bool:
        """Tell whether any of the polygons contains the point."""
        return any(polygon.contains(lon, lat) for polygon in self.polygons)

    def to_geojson(self) -> dict[str, Any]:
        """The GeoJSON geometry object."""
        parts = [polygon.to_geojson()["coordinates"] for polygon in self.polygons]
        return {"type": "MultiPolygon", "coordinates": parts}


Geometry: TypeAlias = Polygon | MultiPolygon


def _in_ring(ring: Ring, x: float, y: float) -> bool:
    """Even-odd ray casting towards +x; winding order does not matter."""
    inside = False
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def parse_geometry(raw: object, *, field: str = "geometry") -> Geometry:
    """Validate a GeoJSON Polygon or MultiPolygon; errors name the coordinate path."""
    if not isinstance(raw, Mapping):
        raise GridError(field, "must be a GeoJSON Polygon or MultiPolygon object")
    kind, coordinates = raw.get("type"), raw.get("coordinates")
    if kind == "Polygon":
        return _polygon(coordinates, f"{field}.coordinates")
    if kind == "MultiPolygon":
        parts = _array(coordinates, f"{field}.coordinates", minimum=1)
        path = f"{field}.coordinates"
        return MultiPolygon(tuple(_polygon(p, f"{path}[{i}]") for i, p in enumerate(parts)))
    raise GridError(f"{field}.type", f"must be Polygon or MultiPolygon, not {kind!r}")


def _array(raw: object, path: str, *, minimum: int) -> list[Any]:
    if not isinstance(raw, list) or len(raw) < minimum:
        raise GridError(path, f"must be an array of at least {minimum}")
    return raw


def _polygon(raw: object, path: str) -> Polygon:
    rings = _array(raw, path, minimum=1)
    return Polygon(tuple(_ring(ring, f"{path}[{i}]") for i, ring in enumerate(rings)))


def _ring(raw: object, path: str) -> Ring:
    positions = _array(raw, path, minimum=4)
    ring = tuple(_position(p, f"{path}[{i}]") for i, p in enumerate(positions))
    if ring[0] != ring[-1]:
        raise GridError(path, "ring is not closed: the last position must equal the first")
    return ring


def _position(raw: object, path: str) -> Position:
    # A third number (altitude) is allowed by GeoJSON and ignored here.
    if not isinstance(raw, list) or len(raw) not in (2, 3):
        raise GridError(path, "must be [lon, lat] or [lon, lat, altitude]")
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in raw):
        raise GridError(path, f"must hold numbers, not {raw!r}")
    lon, lat = float(raw[0]), float(raw[1])
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        raise GridError(path, f"longitude {raw[0]} is outside -180..180")
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        raise GridError(path, f"latitude {raw[1]} is outside -90..90 (GeoJSON is [lon, lat])")
    return (lon, lat)


# ------------------------------------------------------------------------------ units, index
@dataclass(frozen=True, slots=True)
class GridUnit:
    """A node of the grid hierarchy; level and parent always agree with the code."""

    code: str
    name: str
    level: GridLevel
    parent: str | None
    polygon: Geometry | None = None

    def __post_init__(self) -> None:
        parsed = parse_grid_code(self.code)
        if self.level is not parsed.level:
            raise GridError("level", f"must be {parsed.level.value!r} for code {self.code}")
        if self.parent != parsed.parent:
            raise GridError("parent", f"must be {parsed.parent!r} for code {self.code}")
        if not self.name.strip():
            raise GridError("name", "must not be empty")

    @classmethod
    def of(cls, code: str, name: str, *, polygon: Geometry | None = None) -> "GridUnit":
        """A unit whose level and parent are derived from its code."""
        parsed = parse_grid_code(code)
        return cls(code, name, parsed.level, parsed.parent, polygon)

    def contains(self, lat: float, lon: float) -> bool | None:
        """Tell whether the point lies in the unit's polygon; None without a polygon."""
        return None if self.polygon is None else self.polygon.contains(lon, lat)

    def to_feature(self) -> dict[str, Any]:
        """The unit as a GeoJSON Feature, in the shape load_grid_geojson reads."""
        properties = {"code": self.code, "name": self.name, "level": self.level.value}
        geometry = None if self.polygon is None else self.polygon.to_geojson()
        return {"type": "Feature", "properties": properties, "geometry": geometry}


class GridIndex:
    """Grid units by code, with parent/child navigation; built once, read on every check."""

    def __init__(self, units: Iterable[GridUnit]) -> None:
        self._units: dict[str, GridUnit] = {}
        self._children: dict[str, list[GridUnit]] = {}
        for unit in units:
            if unit.code in self._units:
                raise GridError("code", f"duplicate grid code {unit.code}")
            self._units[unit.code] = unit
            if unit.parent is not None:
                self._children.setdefault(unit.parent, []).append(unit)

    def __len__(self) -> int:
        return len(self._units)

    def __iter__(self) -> Iterator[GridUnit]:
        return iter(self._units.values())

    def __contains__(self, code: object) -> bool:
        return code in self._units

    def get(self, code: str) -> GridUnit | None:
        """The unit with this code, or None."""
        return self._units.get(code)

    def children(self, code: str) -> tuple[GridUnit, ...]:
        """Units whose parent is `code`, in insertion order."""
        return tuple(self._children.get(code, ()))

    def ancestors(self, code: str) -> tuple[GridUnit, ...]:
        """Known units above `code`, nearest first; levels missing from the index are skipped."""
        chain = parse_grid_code(code).ancestors
        return tuple(self._units[c] for c in chain if c in self._units)

    def orphans(self) -> tuple[GridUnit, ...]:
        """Units whose parent level is missing from the index (accepted, but worth a warning)."""
        return tuple(u for u in self if u.parent is not None and u.parent not in self._units)

    def contains(self, code: str, lat: float, lon: float) -> bool | None:
        """Whether the unit's polygon holds the point; None without one, KeyError if unknown."""
        return self._units[code].contains(lat, lon)

    def locate(self, lat: float, lon: float, *, level: GridLevel = GridLevel.GRID) -> list[str]:
        """Codes of the units at `level` whose polygons hold the point."""
        return [u.code for u in self if u.level is level and u.contains(lat, lon)]

    def to_geojson(self) -> dict[str, Any]:
        """Every unit as one GeoJSON FeatureCollection."""
        return {"type": "FeatureCollection", "features": [u.to_feature() for u in self]}


# ------------------------------------------------------------------------------ GeoJSON import
@dataclass(frozen=True, slots=True)
class GridIssue:
    """One problem in a GeoJSON import: the feature, the field path and the reason."""

    feature: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class GridImportError(ValueError):
    """A GeoJSON grid that cannot be imported; carries every issue found, not just the first."""

    def __init__(self, issues: Sequence[GridIssue]) -> None:
        self.issues = tuple(issues)
        shown = "; ".join(str(issue) for issue in self.issues[:5])
        more = f" (and {len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        super().__init__(f"{len(self.issues)} problem(s) in the grid GeoJSON: {shown}{more}")


def load_grid_geojson(source: str | Path | Mapping[str, Any]) -> list[GridUnit]:
    """Grid units from a GeoJSON FeatureCollection (JSON text, a file path or parsed JSON)."""
    if isinstance(source, Mapping):
        document: Any = source
    else:
        text = source if isinstance(source, str) and source.lstrip()[:1] == "{" else None
        try:
            text = text if text is not None else Path(source).read_text(encoding="utf-8")
            document = json.loads(text)
        except (OSError, ValueError) as err:
            raise GridImportError([GridIssue(None, "document", f"cannot be read: {err}")]) from err
    if not isinstance(document, Mapping) or document.get("type") != "FeatureCollection":
        raise GridImportError([GridIssue(None, "type", "must be a GeoJSON FeatureCollection")])
    features = document.get("features")
    if not isinstance(features, list):
        raise GridImportError([GridIssue(None, "features", "must be an array")])
    units: list[GridUnit] = []
    issues: list[GridIssue] = []
    first_seen: dict[str, int] = {}
    for index, feature in enumerate(features):
        try:
            unit = _feature_unit(feature, f"features[{index}]")
        except GridError as err:
            issues.append(GridIssue(index, err.field, err.reason))
            continue
        if unit.code in first_seen:
            reason = f"duplicate code {unit.code}, first in features[{first_seen[unit.code]}]"
            issues.append(GridIssue(index, f"features[{index}].properties.code", reason))
            continue
        first_seen[unit.code] = index
        units.append(unit)
    if issues:
        raise GridImportError(issues)
    return units


def _feature_unit(feature: object, path: str) -> GridUnit:
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise GridError(f"{path}.type", "must be a GeoJSON Feature")
    props = feature.get("properties")
    if not isinstance(props, Mapping):
        raise GridError(f"{path}.properties", "must be an object with code and name")
    raw_code = props.get("code")
    if raw_code is None:
        raise GridError(f"{path}.properties.code", "is required")
    # GIS tools export numeric attribute columns as JSON numbers; codes never start with 0.
    if isinstance(raw_code, int) and not isinstance(raw_code, bool):
        raw_code = str(raw_code)
    parsed = parse_grid_code(raw_code, field=f"{path}.properties.code")
    name = props.get("name")
    if not isinstance(name, str) or not name.strip():
        raise GridError(f"{path}.properties.name", "is required (a non-empty string)")
    for key, expected in (("level", parsed.level.value), ("parent", parsed.parent)):
        if props.get(key) is not None and props.get(key) != expected:
            reason = f"{props.get(key)!r} does not match code {parsed.code} ({expected!r})"
            raise GridError(f"{path}.properties.{key}", reason)
    geometry = feature.get("geometry")
    polygon = None if geometry is None else parse_geometry(geometry, field=f"{path}.geometry")
    return GridUnit(parsed.code, name.strip(), parsed.level, parsed.parent, polygon)


# ------------------------------------------------------------------------------ location check
class LocationStatus(StrEnum):
    """Outcome of checking a sensor's coordinates against its declared grid unit."""

    OK = "ok"
    OUTSIDE = "outside"
    UNKNOWN_UNIT = "unknown_unit"
    NO_POLYGON = "no_polygon"


@dataclass(frozen=True, slots=True)
class LocationCheck:
    """The outcome, the unit whose polygon decided it, and where the point actually lies."""

    status: LocationStatus
    grid_code: str
    checked_against: str | None = None
    found_in: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """A sentence for the installer (API warning or strict-mode error)."""
        other = self.checked_against not in (None, self.grid_code)
        where = f" (checked against {self.checked_against})" if other else ""
        match self.status:
            case LocationStatus.OK:
                return f"location lies in grid unit {self.grid_code}{where}"
            case LocationStatus.UNKNOWN_UNIT:
                return f"grid unit {self.grid_code} is not in the grid"
            case LocationStatus.NO_POLYGON:
                return f"grid unit {self.grid_code} has no polygon; location not checked"
        found = f"; it lies in {', '.join(self.found_in)}" if self.found_in else ""
        return f"location is outside grid unit {self.grid_code}{where}{found}"


def check_location(index: GridIndex, grid_code: str, lat: float, lon: float) -> LocationCheck:
    """Check coordinates against the declared unit, or its nearest ancestor with a polygon."""
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"coordinates out of range: lat {lat}, lon {lon}")
    unit = index.get(grid_code)
    if unit is None:
        return LocationCheck(LocationStatus.UNKNOWN_UNIT, grid_code)
    # Often only communities are drawn: outside the community is certainly outside the unit.
    for candidate in (unit, *index.ancestors(grid_code)):
        inside = candidate.contains(lat, lon)
        if inside is None:
            continue
        if inside:
            return LocationCheck(LocationStatus.OK, grid_code, candidate.code)
        found = tuple(index.locate(lat, lon, level=unit.level))
        return LocationCheck(LocationStatus.OUTSIDE, grid_code, candidate.code, found)
    return LocationCheck(LocationStatus.NO_POLYGON, grid_code)
