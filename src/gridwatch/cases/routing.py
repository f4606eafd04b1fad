"""Auto-dispatch routing: (case category, grid unit, asset owner) → the responsible unit.

Pure: no I/O beyond reading a routing file. A table lists entries `{category, grid, unit,
by_owner}`. Resolution, first hit wins:

1. When the sensor names an owner listed in the table's `owners`, the most specific matching
   entry with `by_owner: true` routes the case to that owner's unit. The asset owner beats
   any grid route: an elevator's maintenance company is obliged to respond wherever the
   elevator stands, and a district-wide default must not shadow it.
2. Otherwise the most specific matching entry with a `unit` routes to it.
3. No match: None, and the case is dispatched by hand.

"Most specific" compares the grid level first (unit grid → community → street → district →
anywhere), then the category pattern (exact > longer prefix > `*`). A 14-digit legacy unit-grid
code and its 15-digit widened form (`GridCode.widened`) name the same unit.

`RoutingInForce` holds the one table a process routes by (the stored one, else the file's) and
swaps it whole; reading and writing the stored table is `cases.routing_store`'s.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    StrictBool,
    StrictStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from gridwatch.registry.grid import GridCodeError, GridLevel, parse_grid_code

DEMO_ROUTING_PATH = Path(__file__).with_name("routing_demo.yaml")
# The unit lands in cases.unit, a String(64) column: a longer one could be routed, never stored.
Unit = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
OwnerName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
_CATEGORY_RE = re.compile(r"^(?:\*|[^\s*]+\*?)$")


def _grid_key(code: str) -> str:
    """The code entries and cases are compared by: unit grids in their 15-digit form."""
    return parse_grid_code(code, field="grid").widened()


def _owner_key(name: str) -> str:
    # Installers type owner names by hand; spacing and case are not worth a manual dispatch.
    return " ".join(name.split()).casefold()


def check_category_pattern(pattern: str) -> str:
    """The pattern unchanged, or ValueError saying what a category pattern looks like."""
    if not _CATEGORY_RE.match(pattern):
        raise ValueError(
            f"{pattern!r} must be a category such as 'event:0401', a prefix ending in '*' "
            "such as 'event:04*', or '*'"
        )
    return pattern


def category_matches(pattern: str, category: str) -> bool:
    """Tell whether a case category fits a pattern: exact, a prefix ending in '*', or '*'."""
    if pattern.endswith("*"):
        return category.startswith(pattern[:-1])
    return category == pattern


class RouteEntry(BaseModel):
    """One row: cases of `category` in `grid` (absent: anywhere) go to `unit` or to the owner."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: StrictStr
    grid: str | None = None
    unit: Unit | None = None
    by_owner: StrictBool = False

    @field_validator("category")
    @classmethod
    def _check_category(cls, value: str) -> str:
        return check_category_pattern(value)

    @field_validator("grid", mode="before")
    @classmethod
    def _check_grid(cls, value: Any) -> Any:
        # Unquoted in YAML a code is a number; codes never start with 0, so nothing is lost.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is None:
            return None
        try:
            return parse_grid_code(value, field="grid").code
        except GridCodeError as err:
            raise ValueError(err.reason) from err

    @model_validator(mode="after")
    def _check_target(self) -> Self:
        if self.unit is None and not self.by_owner:
            raise PydanticCustomError(
                "unit_required", "is required unless by_owner is true", {"field": "unit"}
            )
        return self

    @property
    def level(self) -> GridLevel | None:
        """The grid level the entry is written for; None means anywhere."""
        return None if self.grid is None else parse_grid_code(self.grid).level

    @property
    def category_rank(self) -> tuple[bool, int]:
        """Orders patterns from least to most specific: `*` < shorter prefix < longer < exact."""
        exact = not self.category.endswith("*")
        return (exact, len(self.category.rstrip("*")))

    def matches_category(self, category: str) -> bool:
        """Tell whether the case category fits this entry's pattern."""
        return category_matches(self.category, category)

    def describe(self) -> str:
        """The entry as a person would name it: its category and where it applies."""
        return f"{self.category} " + ("anywhere" if self.grid is None else f"in {self.grid}")


class RoutingTable(BaseModel):
    """The routing entries and the roster of asset owners the dispatch system knows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owners: dict[OwnerName, Unit] = {}
    routes: tuple[RouteEntry, ...] = ()

    # Entries by grid key, most specific category first, with their position in `routes`.
    _by_grid: dict[str | None, tuple[tuple[int, RouteEntry], ...]] = PrivateAttr(
        default_factory=dict
    )
    _owner_units: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_table(self) -> Self:
        owner_units: dict[str, str] = {}
        for name, unit in self.owners.items():
            if _owner_key(name) in owner_units:
                raise PydanticCustomError(
                    "duplicate_owner",
                    "{name!r} is listed twice (names compare ignoring case and spacing)",
                    {"field": "owners", "name": name},
                )
            owner_units[_owner_key(name)] = unit
        first_at: dict[tuple[str, str | None], int] = {}
        by_grid: dict[str | None, list[tuple[int, RouteEntry]]] = {}
        for index, entry in enumerate(self.routes):
            key = None if entry.grid is None else _grid_key(entry.grid)
            if (entry.category, key) in first_at:
                raise PydanticCustomError(
                    "duplicate_route",
                    "repeats the category and grid unit of entry #{first}",
                    {"entry": index, "field": "grid", "first": first_at[entry.category, key] + 1},
                )
            if entry.by_owner and not owner_units:
                raise PydanticCustomError(
                    "no_owners",
                    "no asset owners are listed under 'owners', so no owner can be routed to",
                    {"entry": index, "field": "by_owner"},
                )
            first_at[entry.category, key] = index
            by_grid.setdefault(key, []).append((index, entry))
        self._by_grid = {
            key: tuple(sorted(rows, key=lambda row: row[1].category_rank, reverse=True))
            for key, rows in by_grid.items()
        }
        self._owner_units = owner_units
        return self

    def owner_unit(self, owner: str | None) -> str | None:
        """The unit that answers for this asset owner, None when the owner is not listed."""
        return None if owner is None else self._owner_units.get(_owner_key(owner))

    def candidates(self, key: str | None) -> tuple[tuple[int, RouteEntry], ...]:
        """Entries written for one grid key (None: anywhere), most specific category first."""
        return self._by_grid.get(key, ())


@dataclass(frozen=True, slots=True)
class Route:
    """The chosen unit and why: the entry (position in the table), its level, the owner."""

    unit: str
    entry: RouteEntry
    index: int
    level: GridLevel | None
    owner: str | None = None

    @property
    def by_owner(self) -> bool:
        """Tell whether the case goes to the sensor's asset owner rather than a grid unit."""
        return self.owner is not None

    def explain(self) -> str:
        """One line for the case history: which entry matched, where, and by what."""
        level = "" if self.level is None else f", {self.level.value} level"
        via = f"asset owner {self.owner!r}" if self.owner is not None else "grid"
        return f"entry #{self.index + 1} ({self.entry.describe()}{level}) by {via}: {self.unit}"


def route(
    table: RoutingTable, *, category: str, grid: str | None, owner: str | None = None
) -> Route | None:
    """The responsible unit for a case, or None to dispatch by hand; GridCodeError on bad grid."""
    search = _search_order(grid)
    owner_unit = table.owner_unit(owner)
    if owner_unit is not None:
        found = _most_specific(table, category, search, by_owner=True)
        if found is not None:
            index, entry, level = found
            return Route(owner_unit, entry, index, level, owner=owner)
    found = _most_specific(table, category, search, by_owner=False)
    if found is None:
        return None
    index, entry, level = found
    assert entry.unit is not None  # by_owner=False only yields entries with a unit
    return Route(entry.unit, entry, index, level)


def _search_order(grid: str | None) -> list[tuple[str | None, GridLevel | None]]:
    """Grid keys to try, the code's own level first, ending with anywhere."""
    if grid is None:
        return [(None, None)]
    parsed = parse_grid_code(grid, field="grid")
    chain = [(parsed.widened(), parsed.level)]
    chain += [(code, parse_grid_code(code).level) for code in parsed.ancestors]
    return [*chain, (None, None)]


def _most_specific(
    table: RoutingTable,
    category: str,
    search: list[tuple[str | None, GridLevel | None]],
    *,
    by_owner: bool,
) -> tuple[int, RouteEntry, GridLevel | None] | None:
    for key, level in search:
        for index, entry in table.candidates(key):
            usable = entry.by_owner if by_owner else entry.unit is not None
            if usable and entry.matches_category(category):
                return index, entry, level
    return None


# ------------------------------------------------------------------------------------ loading
@dataclass(frozen=True, slots=True)
class RoutingProblem:
    """One thing wrong with a table: the entry (position in `routes`, from 0), the field, why."""

    reason: str
    entry: int | None = None
    field: str | None = None
    label: str | None = None  # the entry as a person names it: `event:0401 in 110101`

    @property
    def path(self) -> str:
        """Where in the document, as the API names fields: `routes.1.grid`, `owners`; or ''."""
        parts = [] if self.entry is None else ["routes", str(self.entry)]
        return ".".join([*parts, self.field] if self.field else parts)

    def describe(self, source: str) -> str:
        """The problem in one line, naming the source, the entry and the field."""
        where = source if self.entry is None else f"{source}: entry #{self.entry + 1}"
        where += f" ({self.label})" if self.label else ""
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


class RoutingError(ValueError):
    """A routing table that cannot be used: the source, and every problem found in it.

    `entry`, `field` and `reason` are the first problem's; the message names it and counts
    the others.
    """

    def __init__(self, source: str, problems: Sequence[RoutingProblem]) -> None:
        if not problems:
            raise ValueError("a RoutingError needs at least one problem")
        self.source = source
        self.problems = tuple(problems)
        first = self.problems[0]
        self.entry = first.entry  # position in `routes`, from 0; messages count from 1
        self.field = first.field
        self.reason = first.reason
        message = first.describe(source)
        if len(self.problems) > 1:
            message += f" (and {len(self.problems) - 1} more)"
        super().__init__(message)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice: PyYAML silently keeps the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_routing(path: str | Path) -> RoutingTable:
    """Read and validate a routing YAML file; RoutingError names the file, entry and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RoutingError(str(path), [RoutingProblem(f"cannot be read ({err.strerror})")]) from err
    return parse_routing(text, source=str(path))


def parse_routing(text: str, *, source: str = "<routing>") -> RoutingTable:
    """Validate routing YAML text; `source` names it in errors."""
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        raise RoutingError(source, [RoutingProblem(f"is not valid YAML ({err})")]) from err
    return build_routing(document, source=source)


def build_routing(document: object, *, source: str = "routing table") -> RoutingTable:
    """Validate an already parsed table (a YAML document, a JSON body, a stored table)."""
    if not isinstance(document, Mapping):
        raise RoutingError(source, [RoutingProblem("must be a mapping with a 'routes' list")])
    if not isinstance(document.get("routes"), list):
        raise RoutingError(source, [RoutingProblem("must be a list of entries", field="routes")])
    try:
        return RoutingTable.model_validate(document)
    except ValidationError as err:
        routes = document["routes"]
        raise RoutingError(source, [_problem(routes, error) for error in err.errors()]) from err


def _problem(routes: list[Any], error: ErrorDetails) -> RoutingProblem:
    ctx = error.get("ctx", {})
    loc = list(error["loc"])
    entry: int | None = ctx.get("entry")
    if loc[:1] == ["routes"] and len(loc) >= 2 and isinstance(loc[1], int):
        entry, loc = loc[1], loc[2:]
    # Pydantic names the constraint type in a location (`constrained-str`); the author did not.
    path = [str(part) for part in loc if not str(part).startswith(("constrained-", "function-"))]
    field = ctx.get("field") or ".".join(path) or None
    reason = error["msg"].removeprefix("Value error, ")
    raw = routes[entry] if entry is not None else None
    label = None
    if isinstance(raw, Mapping):
        grid = raw.get("grid")
        label = f"{raw.get('category', '?')} " + ("anywhere" if grid is None else f"in {grid}")
    return RoutingProblem(reason, entry=entry, field=field, label=label)


# ---------------------------------------------------------------------------- the table in force
class RoutingSource(StrEnum):
    """Where the table in force comes from."""

    API = "api"  # stored in the database (through the API or the CLI)
    FILE = "file"  # GRIDWATCH_ROUTING_FILE, while the database holds none
    NONE = "none"  # neither: every case waits for an officer


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRouting:
    """What the database holds: a table (None: none, the file's is in force) and its version.

    The version counts every change made through the API, the drop of a table included, so
    it only grows; 0 means nothing was ever changed. `updated_*` describe the last change.
    """

    table: RoutingTable | None
    version: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingState:
    """The table in force, where it comes from, and the stored version it reflects."""

    table: RoutingTable | None
    source: RoutingSource
    version: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None


class RoutingInForce:
    """The one routing table a process dispatches by: the stored one, else the file's.

    Whatever routes reads `table` when it routes; a change replaces the whole state in one
    assignment, so a reader sees the old table or the new one, never a mix. Versions only go
    forward: a poll that read the database just before a change made here cannot put the
    older table back.
    """

    def __init__(self, file_table: RoutingTable | None = None) -> None:
        self._file_table = file_table
        self._state = self._in_force(StoredRouting(table=None))

    @property
    def state(self) -> RoutingState:
        """The table in force now, with its source and version."""
        return self._state

    @property
    def table(self) -> RoutingTable | None:
        """The table to route by now; None: every case waits for an officer."""
        return self._state.table

    def adopt(self, stored: StoredRouting) -> bool:
        """Put what the database holds in force; False (nothing changes) unless it is newer."""
        if stored.version <= self._state.version:
            return False
        self._state = self._in_force(stored)
        return True

    def _in_force(self, stored: StoredRouting) -> RoutingState:
        if stored.table is not None:
            table, source = stored.table, RoutingSource.API
        elif self._file_table is not None:
            table, source = self._file_table, RoutingSource.FILE
        else:
            table, source = None, RoutingSource.NONE
        return RoutingState(
            table=table,
            source=source,
            version=stored.version,
            updated_at=stored.updated_at,
            updated_by=stored.updated_by,
        )
