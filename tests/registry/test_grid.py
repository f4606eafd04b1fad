"""Grid codes, polygons, the grid index, GeoJSON import and location checks."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gridwatch.registry.grid import (
    DEMO_GRID_PATH,
    GridCodeError,
    GridError,
    GridImportError,
    GridIndex,
    GridIssue,
    GridLevel,
    GridUnit,
    LocationStatus,
    MultiPolygon,
    Polygon,
    check_location,
    load_grid_geojson,
    parse_geometry,
    parse_grid_code,
)

DATA = Path(__file__).parent / "data"

provinces = st.integers(11, 82).map(str)
three = st.integers(1, 999).map(lambda n: f"{n:03d}")
divisions = st.tuples(provinces, st.integers(0, 9999).map(lambda n: f"{n:04d}")).map("".join)


def rect(west: float, south: float, east: float, north: float) -> tuple[tuple[float, float], ...]:
    """A closed counter-clockwise ring."""
    return ((west, south), (east, south), (east, north), (west, north), (west, south))


@pytest.fixture(scope="module")
def demo() -> GridIndex:
    return GridIndex(load_grid_geojson(DEMO_GRID_PATH))


# ------------------------------------------------------------------------------------- codes
@pytest.mark.parametrize(
    ("code", "level", "ancestors", "legacy"),
    [
        ("110101001001001", GridLevel.GRID, ("110101001001", "110101001", "110101"), False),
        ("11010100100101", GridLevel.GRID, ("110101001001", "110101001", "110101"), True),
        ("110101001001", GridLevel.COMMUNITY, ("110101001", "110101"), False),
        ("110101001", GridLevel.STREET, ("110101",), False),
        ("110101", GridLevel.DISTRICT, (), False),
    ],
)
def test_parse_grid_code_levels(code, level, ancestors, legacy):
    parsed = parse_grid_code(code)
    assert (parsed.level, parsed.ancestors, parsed.legacy) == (level, ancestors, legacy)
    assert parsed.parent == (ancestors[0] if ancestors else None)


@given(district=divisions, street=three, community=three, sequence=three)
def test_fifteen_digit_codes_split_6_3_3_3(district, street, community, sequence):
    parsed = parse_grid_code(district + street + community + sequence)
    assert (parsed.district, parsed.street, parsed.community, parsed.sequence) == (
        district,
        district + street,
        district + street + community,
        sequence,
    )
    assert parsed.widened() == parsed.code


@given(district=divisions, street=three, community=three, sequence=st.integers(1, 99))
def test_fourteen_digit_codes_split_6_3_3_2(district, street, community, sequence):
    code = f"{district}{street}{community}{sequence:02d}"
    parsed = parse_grid_code(code)
    assert parsed.legacy
    assert parsed.community == code[:12]
    assert parsed.sequence == f"{sequence:02d}"
    assert parsed.widened() == f"{code[:12]}{sequence:03d}"


@given(
    st.text(alphabet="0123456789", max_size=20).filter(lambda s: len(s) not in (6, 9, 12, 14, 15))
)
def test_other_lengths_are_refused(code):
    with pytest.raises(GridCodeError, match=f"must have 15 digits .* not {len(code)}$"):
        parse_grid_code(code)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (110101001001001, "must be a string of digits, not int"),
        ("11010100100100x", "must contain only digits; 'x' at position 15"),
        ("110101 01001001", "must contain only digits; ' ' at position 7"),
        ("\u0661\u06610101001001001", "must contain only digits; '\u0661' at position 1"),
        ("1101010010010011", "must have 15 digits"),
        ("001010001001001", "digits 1-2 (00) are not a GB/T 2260 province"),
        ("990101001001001", "digits 1-2 (99) are not a GB/T 2260 province"),
        ("110101000001001", "street part (digits 7-9) must not be 000"),
        ("110101001000001", "community part (digits 10-12) must not be 000"),
        ("110101001001000", "grid part (digits 13-15) must not be 000"),
        ("11010100100100", "grid part (digits 13-14) must not be 00"),
    ],
)
def test_bad_codes_name_field_and_reason(code, reason):
    with pytest.raises(GridCodeError) as caught:
        parse_grid_code(code, field="grid")
    assert caught.value.field == "grid"
    assert caught.value.reason.startswith(reason)


# ---------------------------------------------------------------------------------- geometry
coordinate = st.floats(-170, 170, allow_nan=False)
latitude = st.floats(-80, 80, allow_nan=False)


@st.composite
def rectangles(draw: st.DrawFn) -> tuple[float, float, float, float]:
    west, east = sorted(draw(st.lists(coordinate, min_size=2, max_size=2, unique=True)))
    south, north = sorted(draw(st.lists(latitude, min_size=2, max_size=2, unique=True)))
    return west, south, east, north


def between(data: st.DataObject, low: float, high: float) -> float:
    return data.draw(st.floats(low, high, exclude_min=True, exclude_max=True))


@given(box=rectangles(), data=st.data())
def test_point_strictly_inside_a_rectangle_is_inside(box, data):
    west, south, east, north = box
    assume(east - west > 1e-9 and north - south > 1e-9)
    lon, lat = between(data, west, east), between(data, south, north)
    assert Polygon((rect(*box),)).contains(lon, lat)


@given(box=rectangles(), lon=st.floats(-180, 180), lat=st.floats(-90, 90))
def test_point_outside_a_rectangle_is_outside(box, lon, lat):
    west, south, east, north = box
    assume(not (west <= lon <= east and south <= lat <= north))
    assert not Polygon((rect(*box),)).contains(lon, lat)


@given(box=rectangles(), data=st.data())
def test_point_in_a_hole_is_outside_and_around_it_inside(box, data):
    west, south, east, north = box
    width, height = east - west, north - south
    assume(width > 1e-6 and height > 1e-6)
    hole = (west + width / 4, south + height / 4, east - width / 4, north - height / 4)
    polygon = Polygon((rect(*box), rect(*hole)[::-1]))
    assert not polygon.contains(between(data, hole[0], hole[2]), between(data, hole[1], hole[3]))
    # The band west of the hole is still inside.
    assert polygon.contains(between(data, west, hole[0]), between(data, south, north))


small = st.integers(-10, 10)


@given(
    points=st.lists(st.tuples(small, small), min_size=3, max_size=8, unique=True),
    x=small,
    y=small,
)
def test_winding_order_does_not_matter(points, x, y):
    # Integer vertices and an off-lattice point: never on an edge, where either answer is right.
    lon, lat = x + 0.123456789, y + 0.5
    ring = (*points, points[0])
    assert Polygon((ring,)).contains(lon, lat) == Polygon((ring[::-1],)).contains(lon, lat)


@given(boxes=st.lists(rectangles(), min_size=1, max_size=4), lon=coordinate, lat=latitude)
def test_multipolygon_contains_when_any_part_does(boxes, lon, lat):
    parts = tuple(Polygon((rect(*box),)) for box in boxes)
    assert MultiPolygon(parts).contains(lon, lat) == any(p.contains(lon, lat) for p in parts)


@pytest.mark.parametrize(
    ("lon", "lat", "inside"),
    [(0.5, 0.5, True), (0.5, 1.5, True), (1.5, 0.5, True), (1.5, 1.5, False), (-0.5, 0.5, False)],
)
def test_concave_l_shape(lon, lat, inside):
    ring = ((0, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2), (0, 0))
    assert Polygon((ring,)).contains(lon, lat) is inside


def test_geometry_round_trips_through_geojson():
    geometry = {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]]]}
    parsed = parse_geometry(geometry)
    assert parse_geometry(parsed.to_geojson()) == parsed
    assert parsed.to_geojson() == {
        "type": "MultiPolygon",
        "coordinates": [[[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]],
    }


SQUARE = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]


def polygon(*rings: list[Any]) -> dict[str, object]:
    return {"type": "Polygon", "coordinates": list(rings)}


def square_with(position: list[object]) -> dict[str, object]:
    """The unit square with its third position replaced."""
    return polygon([*SQUARE[:2], position, *SQUARE[3:]])


@pytest.mark.parametrize(
    ("geometry", "field", "reason"),
    [
        ([1, 2], "geometry", "must be a GeoJSON Polygon or MultiPolygon object"),
        ({"type": "Point", "coordinates": [0, 0]}, "geometry.type", "must be Polygon or"),
        (polygon(), "geometry.coordinates", "must be an array of at least 1"),
        (polygon(SQUARE[:3]), "geometry.coordinates[0]", "must be an array of at least 4"),
        (polygon(SQUARE[:4]), "geometry.coordinates[0]", "ring is not closed"),
        (square_with([1]), "geometry.coordinates[0][2]", "must be [lon, lat]"),
        (square_with([1, True]), "geometry.coordinates[0][2]", "must hold numbers"),
        (square_with([181, 1]), "geometry.coordinates[0][2]", "longitude 181 is outside"),
        (
            square_with([116.4, 91]),
            "geometry.coordinates[0][2]",
            "latitude 91 is outside -90..90 (GeoJSON is [lon, lat])",
        ),
        (
            {"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE[:4]]]},
            "geometry.coordinates[1][0]",
            "ring is not closed",
        ),
    ],
)
def test_bad_geometry_names_the_coordinate_path(geometry, field, reason):
    with pytest.raises(GridError) as caught:
        parse_geometry(geometry)
    assert (caught.value.field, caught.value.reason[: len(reason)]) == (field, reason)


def test_altitude_is_accepted_and_dropped():
    ring = [[0, 0, 5], [1, 0, 5], [1, 1, 5], [0, 0, 5]]
    parsed = parse_geometry({"type": "Polygon", "coordinates": [ring]})
    assert parsed == Polygon((((0, 0), (1, 0), (1, 1), (0, 0)),))


# ------------------------------------------------------------------------------ units, index
def test_unit_derives_level_and_parent_from_code():
    unit = GridUnit.of("110101001001001", "North grid 1")
    assert (unit.level, unit.parent, unit.contains(39.9, 116.4)) == (
        GridLevel.GRID,
        "110101001001",
        None,
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("110101001", "x", GridLevel.COMMUNITY, "110101"), "level"),
        (("110101001", "x", GridLevel.STREET, "110102"), "parent"),
        (("110101001", " ", GridLevel.STREET, "110101"), "name"),
        (("11010100", "x", GridLevel.STREET, "110101"), "code"),
    ],
)
def test_unit_refuses_inconsistent_fields(args, field):
    with pytest.raises(GridError) as caught:
        GridUnit(*args)
    assert caught.value.field == field


def test_index_navigation(demo):
    assert len(demo) == 8
    assert [u.code for u in demo.children("110101001")] == ["110101001001", "110101001002"]
    assert [u.code for u in demo.ancestors("110101001002002")] == [
        "110101001002",
        "110101001",
        "110101",
    ]
    assert demo.orphans() == ()
    assert "110101001001001" in demo
    assert demo.get("110101001009001") is None
    assert demo.contains("110101", 39.9289, 116.4166) is None
    assert demo.contains("110101001001001", 39.9289, 116.4166) is True
    with pytest.raises(KeyError):
        demo.contains("110101001009001", 39.9289, 116.4166)


def test_index_refuses_duplicate_codes():
    unit = GridUnit.of("110101", "Dongcheng")
    with pytest.raises(GridError, match="duplicate grid code 110101"):
        GridIndex([unit, unit])


def test_ancestors_skip_missing_levels_and_orphans_are_flagged():
    index = GridIndex([GridUnit.of("110101", "D"), GridUnit.of("110101001001001", "G")])
    assert [u.code for u in index.ancestors("110101001001001")] == ["110101"]
    assert [u.code for u in index.orphans()] == ["110101001001001"]


def test_index_round_trips_through_geojson(demo):
    assert load_grid_geojson(json.dumps(demo.to_geojson())) == list(demo)


# ------------------------------------------------------------------------------ GeoJSON import
@pytest.mark.parametrize(
    "source",
    [
        pytest.param(DEMO_GRID_PATH, id="path"),
        pytest.param(str(DEMO_GRID_PATH), id="path-string"),
        pytest.param(DEMO_GRID_PATH.read_text(encoding="utf-8"), id="text"),
        pytest.param(json.loads(DEMO_GRID_PATH.read_text(encoding="utf-8")), id="parsed"),
    ],
)
def test_load_accepts_path_text_and_parsed_json(source):
    units = load_grid_geojson(source)
    assert [u.level for u in units].count(GridLevel.GRID) == 4


def test_numeric_codes_from_gis_exports_are_accepted():
    feature = {"type": "Feature", "properties": {"code": 110101, "name": "D"}, "geometry": None}
    document = {"type": "FeatureCollection", "features": [feature]}
    assert load_grid_geojson(document) == [GridUnit.of("110101", "D")]


def test_every_bad_feature_is_reported_with_index_and_field():
    with pytest.raises(GridImportError) as caught:
        load_grid_geojson(DATA / "grid_bad.geojson")
    expected = [
        (1, "features[1].properties.code", "is required"),
        (2, "features[2].properties.code", "must contain only digits; 'A' at position 15"),
        (3, "features[3].geometry.coordinates[0]", "ring is not closed"),
        (4, "features[4].geometry.coordinates[0][0]", "latitude 116.41 is outside -90..90"),
        (5, "features[5].properties.code", "duplicate code 110101001001001, first in features[0]"),
        (6, "features[6].properties.name", "is required"),
        (7, "features[7].geometry.type", "must be Polygon or MultiPolygon, not 'Point'"),
        (8, "features[8].properties.level", "'community' does not match code 110101001"),
    ]
    issues = caught.value.issues
    assert [(i.feature, i.field) for i in issues] == [(f, field) for f, field, _ in expected]
    assert all(i.reason.startswith(r) for i, (*_, r) in zip(issues, expected, strict=True))
    assert str(caught.value).startswith("8 problem(s) in the grid GeoJSON: features[1]")


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ('{"type": "FeatureCollection", "features": [', "document"),
        ('{"type": "Feature"}', "type"),
        ('{"type": "FeatureCollection", "features": {}}', "features"),
        (Path("/nonexistent/grid.geojson"), "document"),
    ],
)
def test_unusable_documents_are_refused_whole(source, field):
    with pytest.raises(GridImportError) as caught:
        load_grid_geojson(source)
    assert caught.value.issues[0] == GridIssue(None, field, caught.value.issues[0].reason)


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"code": "110101001", "name": "S", "parent": "110102"}, "parent"),
        ({"code": "110101001", "name": "S", "level": "district"}, "level"),
        ({"code": True, "name": "S"}, "code"),
    ],
)
def test_declared_level_and_parent_must_match_the_code(properties, field):
    feature = {"type": "Feature", "properties": properties, "geometry": None}
    with pytest.raises(GridImportError) as caught:
        load_grid_geojson({"type": "FeatureCollection", "features": [feature]})
    assert caught.value.issues[0].field == f"features[0].properties.{field}"


# ------------------------------------------------------------------------------ location check
@pytest.mark.parametrize(
    ("grid", "lat", "lon"),
    [
        ("110101001001001", 39.9289, 116.4166),
        ("110101001001002", 39.9312, 116.4178),
        ("110101001002001", 39.9275, 116.4150),
        ("110101001002002", 39.9260, 116.4190),
    ],
)
def test_demo_sensors_lie_in_their_own_unit_only(demo, grid, lat, lon):
    check = check_location(demo, grid, lat, lon)
    assert (check.status, check.checked_against) == (LocationStatus.OK, grid)
    assert demo.locate(lat, lon) == [grid]


def test_outside_names_the_unit_the_point_is_in(demo):
    check = check_location(demo, "110101001001001", 39.9260, 116.4190)
    assert (check.status, check.found_in) == (LocationStatus.OUTSIDE, ("110101001002002",))
    assert check.message == (
        "location is outside grid unit 110101001001001; it lies in 110101001002002"
    )


@pytest.mark.parametrize(
    ("grid", "status", "message"),
    [
        ("110101001009001", LocationStatus.UNKNOWN_UNIT, "grid unit 110101001009001 is not in"),
        ("not-a-code", LocationStatus.UNKNOWN_UNIT, "grid unit not-a-code is not in the grid"),
        ("110101", LocationStatus.NO_POLYGON, "grid unit 110101 has no polygon; location not"),
    ],
)
def test_unknown_units_and_missing_polygons(demo, grid, status, message):
    check = check_location(demo, grid, 39.9289, 116.4166)
    assert check.status is status
    assert check.message.startswith(message)


@pytest.mark.parametrize(
    ("lat", "lon", "status"),
    [(39.9289, 116.4166, LocationStatus.OK), (39.9260, 116.4190, LocationStatus.OUTSIDE)],
)
def test_a_unit_without_polygon_is_checked_against_its_community(demo, lat, lon, status):
    bare = GridUnit.of("110101001001003", "Undrawn grid")
    index = GridIndex([*demo, bare])
    check = check_location(index, bare.code, lat, lon)
    assert (check.status, check.checked_against) == (status, "110101001001")
    assert "(checked against 110101001001)" in check.message


def test_coordinates_out_of_range_are_a_caller_error(demo):
    with pytest.raises(ValueError, match="coordinates out of range"):
        check_location(demo, "110101001001001", 116.4, 39.9)
