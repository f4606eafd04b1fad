"""Auto-dispatch routing: resolution order, owner routes, legacy codes, validation, the demo."""

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gridwatch.cases.routing import (
    DEMO_ROUTING_PATH,
    RouteEntry,
    RoutingError,
    RoutingInForce,
    RoutingSource,
    RoutingTable,
    StoredRouting,
    build_routing,
    load_routing,
    parse_routing,
    route,
)
from gridwatch.registry.grid import GridCodeError, GridLevel, parse_grid_code

CODE = "110101001001001"
LEVEL_CODES = {
    GridLevel.GRID: CODE,
    GridLevel.COMMUNITY: "110101001001",
    GridLevel.STREET: "110101001",
    GridLevel.DISTRICT: "110101",
    None: None,
}
ELEVATOR_CO = "Capital Elevator Maintenance Ltd."


def table(*routes: dict[str, Any], owners: dict[str, str] | None = None) -> RoutingTable:
    return build_routing({"owners": owners or {}, "routes": list(routes)})


def entry(category: str, grid: str | None, unit: str | None, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"category": category, **extra}
    if grid is not None:
        raw["grid"] = grid
    if unit is not None:
        raw["unit"] = unit
    return raw


# ---------------------------------------------------------------------------------- fallback
@pytest.mark.parametrize(
    ("present", "expected"),
    [
        ([GridLevel.GRID, GridLevel.COMMUNITY, GridLevel.STREET, GridLevel.DISTRICT, None], "grid"),
        ([GridLevel.COMMUNITY, GridLevel.STREET, GridLevel.DISTRICT, None], "community"),
        ([GridLevel.STREET, GridLevel.DISTRICT, None], "street"),
        ([GridLevel.DISTRICT, None], "district"),
        ([None], "anywhere"),
    ],
)
def test_falls_back_up_the_hierarchy(present, expected):
    names = {level: "anywhere" if level is None else level.value for level in LEVEL_CODES}
    rows = [entry("event:0401", LEVEL_CODES[level], names[level]) for level in present]
    found = route(table(*rows), category="event:0401", grid=CODE)
    assert found is not None
    assert (found.unit, found.level, found.by_owner) == (
        expected,
        None if expected == "anywhere" else GridLevel(expected),
        False,
    )


@pytest.mark.parametrize(
    ("sibling", "shared"),
    [
        ("110102001001001", None),
        ("110101002001001", GridLevel.DISTRICT),
        ("110101001002001", GridLevel.STREET),
        ("110101001001002", GridLevel.COMMUNITY),
    ],
)
def test_a_sibling_falls_back_to_the_level_it_shares(sibling, shared):
    rows = [entry("event:0401", code, "x") for code in LEVEL_CODES.values() if code is not None]
    found = route(table(*rows), category="event:0401", grid=sibling)
    assert (found and found.level) == shared


def test_no_match_is_manual_dispatch():
    rows = [entry("event:0401", "110102", "other district"), entry("event:0402", CODE, "wrong")]
    assert route(table(*rows), category="event:0401", grid=CODE) is None


def test_a_case_without_a_grid_matches_only_entries_for_anywhere():
    rows = [entry("event:*", "110101", "district"), entry("*", None, "duty desk")]
    found = route(table(*rows), category="event:0401", grid=None)
    assert found is not None
    assert (found.unit, found.level) == ("duty desk", None)


@pytest.mark.parametrize("grid", ["11010100100100", "1101010010010011", "11010x001001001", ""])
def test_a_malformed_case_grid_is_refused(grid):
    with pytest.raises(GridCodeError, match=r"^grid: "):
        route(table(entry("*", None, "x")), category="event:0401", grid=grid)


# ------------------------------------------------------------------------- category specificity
SPECIFICITY = [entry(p, "110101", p) for p in ("*", "event:*", "event:04*", "event:0401")]


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("event:0401", "event:0401"),
        ("event:0402", "event:04*"),
        ("event:0501", "event:*"),
        ("component:0601", "*"),
        ("event:04", "event:04*"),
    ],
)
def test_most_specific_category_wins_at_one_level(category, expected):
    found = route(table(*reversed(SPECIFICITY)), category=category, grid=CODE)
    assert found is not None
    assert found.unit == expected


def test_exact_category_beats_a_prefix_of_the_same_text():
    rows = [entry("event:0401*", None, "prefix"), entry("event:0401", None, "exact")]
    found = route(table(*rows), category="event:0401", grid=None)
    assert found is not None
    assert found.unit == "exact"


def test_grid_level_outranks_category_specificity():
    rows = [entry("event:0401", "110101", "district exact"), entry("*", "110101001", "street any")]
    found = route(table(*rows), category="event:0401", grid=CODE)
    assert found is not None
    assert (found.unit, found.index, found.level) == ("street any", 1, GridLevel.STREET)


# ------------------------------------------------------------------------------ legacy codes
@pytest.mark.parametrize(
    ("entry_grid", "case_grid", "level"),
    [
        ("11010100100101", "11010100100101", GridLevel.GRID),
        ("11010100100101", "110101001001001", GridLevel.GRID),
        ("110101001001001", "11010100100101", GridLevel.GRID),
        ("110101001001", "11010100100101", GridLevel.COMMUNITY),
        ("110101001", "11010100100101", GridLevel.STREET),
        ("110101", "11010100100101", GridLevel.DISTRICT),
    ],
)
def test_legacy_14_digit_codes(entry_grid, case_grid, level):
    found = route(
        table(entry("event:0401", entry_grid, "u")), category="event:0401", grid=case_grid
    )
    assert found is not None
    assert found.level is level


def test_a_legacy_code_does_not_match_a_15_digit_code_by_text_prefix():
    # Legacy grid 02 is a text prefix of grid 021, a different unit.
    one = table(entry("event:0401", "11010100100102", "grid 2"))
    assert route(one, category="event:0401", grid="110101001001021") is None


# ------------------------------------------------------------------------------ owner routing
OWNERS = {ELEVATOR_CO: "elevator-co", "Jingcheng Outdoor Media Co.": "jingcheng"}
OWNER_TABLE = table(
    entry("component:0601", "110101", "market supervision", by_owner=True),
    entry("component:0601", CODE, "grid team"),
    entry("component:0307", None, None, by_owner=True),
    entry("*", "110101", "urban management"),
    owners=OWNERS,
)


@pytest.mark.parametrize(
    ("category", "owner", "unit", "by_owner"),
    [
        ("component:0601", ELEVATOR_CO, "elevator-co", True),
        ("component:0601", "  capital elevator   MAINTENANCE ltd. ", "elevator-co", True),
        ("component:0601", "Unlisted Lifts Co.", "grid team", False),
        ("component:0601", None, "grid team", False),
        ("component:0307", "Jingcheng Outdoor Media Co.", "jingcheng", True),
        ("component:0307", None, "urban management", False),
        ("event:0401", ELEVATOR_CO, "urban management", False),
    ],
)
def test_owner_routes(category, owner, unit, by_owner):
    found = route(OWNER_TABLE, category=category, grid=CODE, owner=owner)
    assert found is not None
    assert (found.unit, found.by_owner) == (unit, by_owner)


def test_owner_route_records_the_owner_and_explains_itself():
    found = route(OWNER_TABLE, category="component:0601", grid=CODE, owner=ELEVATOR_CO)
    assert found is not None
    assert (found.owner, found.index, found.level) == (ELEVATOR_CO, 0, GridLevel.DISTRICT)
    assert found.explain() == (
        "entry #1 (component:0601 in 110101, district level) by asset owner "
        "'Capital Elevator Maintenance Ltd.': elevator-co"
    )


def test_owner_entry_without_a_unit_is_skipped_when_the_owner_is_unknown():
    rows = [entry("component:0307", CODE, None, by_owner=True), entry("component:*", None, "city")]
    found = route(table(*rows, owners=OWNERS), category="component:0307", grid=CODE)
    assert found is not None
    assert (found.unit, found.index) == ("city", 1)


# ---------------------------------------------------------------------------------- validation
def error_of(text: str) -> RoutingError:
    with pytest.raises(RoutingError) as caught:
        parse_routing(text, source="routing.yaml")
    return caught.value


@pytest.mark.parametrize(
    ("routes", "entry_index", "field", "reason"),
    [
        ('[{category: "*", grid: "1101010"}]', 0, "grid", "must have 15 digits"),
        ('[{category: "*", grid: "11010A"}]', 0, "grid", "only digits"),
        ('[{category: "*", grid: "990101"}]', 0, "grid", "not a GB/T 2260 province"),
        ('[{category: "*", grid: "110101000"}]', 0, "grid", "street part"),
        ('[{category: "*", grid: [110101]}]', 0, "grid", "string of digits"),
        ('[{category: "*", unit: u}, {category: "ev*nt", unit: u}]', 1, "category", "'*'"),
        ('[{category: "event:04**", unit: u}]', 0, "category", "prefix ending in '*'"),
        ('[{category: "event: 0401", unit: u}]', 0, "category", "such as"),
        ("[{category: 401, unit: u}]", 0, "category", "valid string"),
        ('[{category: "*", grid: "110101"}]', 0, "unit", "required unless by_owner"),
        ('[{category: "*", unit: "   "}]', 0, "unit", "at least 1 character"),
        (f'[{{category: "*", unit: "{"x" * 65}"}}]', 0, "unit", "at most 64 characters"),
        ('[{category: "*", unit: u, by_owner: "yes"}]', 0, "by_owner", "valid boolean"),
        ('[{category: "*", unit: u, by_owner: true}]', 0, "by_owner", "no asset owners"),
        ('[{category: "*", units: u}]', 0, "units", "Extra inputs"),
        (
            '[{category: "*", grid: 110101, unit: a}, {category: "*", grid: "110101", unit: b}]',
            1,
            "grid",
            "repeats the category and grid unit of entry #1",
        ),
        (
            '[{category: "*", grid: "110101001001001", unit: a},'
            ' {category: "*", grid: "11010100100101", unit: b}]',
            1,
            "grid",
            "entry #1",
        ),
    ],
)
def test_entry_errors_name_the_entry_and_field(routes, entry_index, field, reason):
    error = error_of(f"routes: {routes}\n")
    assert (error.source, error.entry, error.field) == ("routing.yaml", entry_index, field)
    assert reason in error.reason
    assert str(error).startswith(f"routing.yaml: entry #{entry_index + 1} (")
    assert f": {field}: " in str(error)


def test_an_error_names_the_entry_by_its_category_and_grid():
    text = 'routes: [{category: "event:0401", grid: "110101"}]\n'
    assert str(error_of(text)).startswith("routing.yaml: entry #1 (event:0401 in 110101): unit: ")


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("owners: {Acme: a, ' acme ': b}\nroutes: []\n", "owners", "listed twice"),
        ("owners: {Acme: ''}\nroutes: []\n", "owners.Acme", "at least 1 character"),
        ("routes: []\nextra: 1\n", "extra", "Extra inputs"),
        ("owners: [Acme]\nroutes: []\n", "owners", "valid dictionary"),
    ],
)
def test_table_errors_name_the_field(text, field, reason):
    error = error_of(text)
    assert (error.entry, error.field) == (None, field)
    assert reason in error.reason


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("routes: [\n", None, "is not valid YAML"),
        ("routes: []\nroutes: []\n", None, "duplicate key 'routes'"),
        ('routes: [{category: "*", unit: a, unit: b}]\n', None, "duplicate key 'unit'"),
        ("- category: '*'\n", None, "must be a mapping with a 'routes' list"),
        ("", None, "must be a mapping with a 'routes' list"),
        ("owners: {}\n", "routes", "must be a list of entries"),
        ("routes: {category: '*'}\n", "routes", "must be a list of entries"),
    ],
)
def test_document_errors(text, field, reason):
    error = error_of(text)
    assert (error.entry, error.field) == (None, field)
    assert reason in str(error)


def test_every_problem_is_named_with_its_path():
    error = error_of(
        'routes: [{category: "*", grid: "1101010", unit: a}, {category: "ev*nt", unit: b},'
        ' {category: "*", grid: "110101"}]\n'
    )
    assert [(p.path, p.entry, p.field) for p in error.problems] == [
        ("routes.0.grid", 0, "grid"), ("routes.1.category", 1, "category"),
        ("routes.2.unit", 2, "unit"),
    ]  # fmt: skip
    assert str(error).startswith("routing.yaml: entry #1 (* in 1101010): grid: ")
    assert str(error).endswith("(and 2 more)")


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("owners: {Acme: a, ' acme ': b}\nroutes: []\n", "owners"),
        ("owners: {}\n", "routes"),
        ("- category: '*'\n", ""),
    ],
)
def test_table_and_document_problems_have_paths_without_an_entry(text, path):
    assert [p.path for p in error_of(text).problems] == [path]


def test_an_unreadable_file_is_a_routing_error(tmp_path: Path):
    with pytest.raises(RoutingError, match=r"missing\.yaml: cannot be read"):
        load_routing(tmp_path / "missing.yaml")


def test_load_reads_a_file_and_accepts_unquoted_codes(tmp_path: Path):
    path = tmp_path / "routing.yaml"
    path.write_text("routes:\n  - {category: '*', grid: 110101001, unit: ' street office '}\n")
    loaded = load_routing(path)
    assert loaded.routes == (RouteEntry(category="*", grid="110101001", unit="street office"),)


def test_the_table_is_frozen():
    loaded = table(entry("*", None, "x"))
    with pytest.raises(ValidationError, match="frozen"):
        loaded.routes = ()  # type: ignore[misc]


# ---------------------------------------------------------------------------------- demo table
DEMO = load_routing(DEMO_ROUTING_PATH)


@pytest.mark.parametrize(
    ("category", "grid", "owner", "unit"),
    [
        ("component:0601", "110101001002001", ELEVATOR_CO, "Capital Elevator Maintenance Ltd."),
        ("component:0601", "110101001002001", None, "market supervision bureau"),
        ("component:0307", "110101001001002", "Jingcheng Outdoor Media Co.", "Jingcheng"),
        ("event:0401", "110101001001001", None, "flood control office"),
        ("event:0402", "110101001002002", None, "water authority"),
        ("event:0102", "110101001002002", None, "Demo Street office"),
        ("event:0103", "110101001001002", None, "North Community residents' committee"),
        ("event:0103", "110101001002001", None, "Demo Street office"),
        ("event:0507", "110101001002002", None, "South grid 2 grid team"),
        ("event:0507", "110101001002001", None, "enforcement bureau"),
        ("event:0505", "110101001002002", None, "traffic police"),
        ("maintenance:offline", "110101001001001", None, "sensor maintenance"),
    ],
)
def test_demo_table_routes_the_demo_grid(category, grid, owner, unit):
    found = route(DEMO, category=category, grid=grid, owner=owner)
    assert found is not None
    assert unit in found.unit


def test_demo_table_leaves_other_districts_to_manual_dispatch():
    assert route(DEMO, category="event:0401", grid="110102001001001") is None


# ---------------------------------------------------------------------------------- property
DEPTH = {None: 0, GridLevel.DISTRICT: 1, GridLevel.STREET: 2, GridLevel.COMMUNITY: 3}
DEPTH[GridLevel.GRID] = 4


def make_code(district: str, street: str, community: str, grid: str, length: int) -> str:
    legacy = length == 14
    return (district + street + community + (grid[1:] if legacy else grid))[:length]


two = st.sampled_from(["001", "002"])
lengths = st.sampled_from([6, 9, 12, 14, 15])
codes = st.builds(make_code, st.sampled_from(["110101", "110102"]), two, two, two, lengths)
patterns = st.sampled_from(
    ["*", "event:*", "event:04*", "event:040*", "event:0401", "event:0402", "component:0601"]
)
entries = st.builds(
    lambda category, grid, unit, by_owner: entry(category, grid, unit, by_owner=by_owner),
    patterns,
    st.none() | codes,
    st.sampled_from([None, "u1", "u2"]),
    st.booleans(),
).filter(lambda raw: "unit" in raw or raw["by_owner"])


def widened(code: str | None) -> str | None:
    return None if code is None else parse_grid_code(code).widened()


def rank(row: RouteEntry) -> tuple[int, bool, int]:
    return (DEPTH[row.level], *row.category_rank)


@given(
    rows=st.lists(
        entries, max_size=12, unique_by=lambda r: (r["category"], widened(r.get("grid")))
    ),
    code=codes,
    category=st.sampled_from(["event:0401", "event:0402", "event:0403", "component:0601"]),
    owner=st.sampled_from([None, ELEVATOR_CO, "Someone Else"]),
)
def test_the_chosen_route_is_the_most_specific_match(rows, code, category, owner):
    routes = table(*rows, owners={ELEVATOR_CO: "elevator-co"})
    found = route(routes, category=category, grid=code, owner=owner)
    full = widened(code)
    assert full is not None
    matching = [
        row
        for row in routes.routes
        if row.matches_category(category) and full.startswith(widened(row.grid) or "")
    ]
    by_owner = [row for row in matching if row.by_owner] if owner == ELEVATOR_CO else []
    pool = by_owner or [row for row in matching if row.unit is not None]
    assert (found is None) == (not pool)
    assert found is None or (
        full.startswith(widened(found.entry.grid) or "")
        and found.entry is routes.routes[found.index]
        and found.by_owner == bool(by_owner)
        and found.level is found.entry.level
        and not [row for row in pool if rank(row) > rank(found.entry)]
    )
    assert (found and found.entry) == max(pool, key=rank, default=None)


# --------------------------------------------------------------------------- the table in force
FILE_TABLE = table(entry("*", None, "file-unit"))
API_TABLE = table(entry("*", None, "api-unit"))


def test_the_file_table_is_in_force_until_one_is_stored_and_again_once_it_is_dropped():
    routing = RoutingInForce(FILE_TABLE)
    assert (routing.table, routing.state.source, routing.state.version) == (
        FILE_TABLE, RoutingSource.FILE, 0,
    )  # fmt: skip

    assert routing.adopt(StoredRouting(table=API_TABLE, version=1, updated_by="key_1"))
    assert (routing.table, routing.state.source, routing.state.updated_by) == (
        API_TABLE, RoutingSource.API, "key_1",
    )  # fmt: skip

    assert routing.adopt(StoredRouting(table=None, version=2, updated_by="key_2"))
    assert (routing.table, routing.state.source, routing.state.version) == (
        FILE_TABLE, RoutingSource.FILE, 2,
    )  # fmt: skip


def test_without_a_file_there_is_no_table_until_one_is_stored():
    routing = RoutingInForce()
    assert (routing.table, routing.state.source) == (None, RoutingSource.NONE)
    routing.adopt(StoredRouting(table=API_TABLE, version=1))
    routing.adopt(StoredRouting(table=None, version=2))
    assert (routing.table, routing.state.source) == (None, RoutingSource.NONE)


@given(versions=st.permutations(range(1, 8)))
def test_whatever_order_versions_arrive_in_the_newest_stays(versions):
    # A poll that read the database before a change made in this process may arrive after it.
    routing = RoutingInForce(FILE_TABLE)
    tables = {v: table(entry("*", None, f"unit-{v}")) if v % 2 else None for v in versions}
    for version in versions:
        adopted = routing.adopt(StoredRouting(table=tables[version], version=version))
        assert adopted == (routing.state.version == version)
    assert routing.state.version == 7
    assert routing.table == tables[7]
