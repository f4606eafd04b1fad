"""The grid and device profiles over the API: GeoJSON in and out, location checks."""

import json

import pytest

from gridwatch.api.roles import Role
from gridwatch.registry.catalog import device_profiles
from gridwatch.registry.grid import DEMO_GRID_PATH
from tests.integration.apiclient import running_api

DEMO_GRID = json.loads(DEMO_GRID_PATH.read_text())
INSIDE = {"lat": 39.9289, "lon": 116.4166}  # inside unit 110101001001001
OUTSIDE = {"lat": 39.9275, "lon": 116.4150}  # inside 110101001002001 instead


@pytest.fixture
async def api(sessions):
    async with running_api(sessions, profiles=device_profiles()) as api:
        yield api


@pytest.fixture
async def strict_api(sessions):
    async with running_api(sessions, profiles=device_profiles(), strict_location=True) as api:
        yield api


async def _put_grid(api):
    response = await api.client.put(
        "/api/v1/grid", json=DEMO_GRID, headers=api.as_role(Role.INSTALLER)
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_grid_round_trips_as_geojson(api):
    replaced = await _put_grid(api)
    assert replaced["units"] == len(DEMO_GRID["features"])
    grid = (await api.client.get("/api/v1/grid", headers=api.as_role(Role.VIEWER))).json()
    assert grid["type"] == "FeatureCollection"
    assert {f["properties"]["code"] for f in grid["features"]} == {
        f["properties"]["code"] for f in DEMO_GRID["features"]
    }


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda f: f["properties"].update(code="12ab"), "properties.code"),
        (lambda f: f.update(geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}),
         "geometry.coordinates"),
    ],
)  # fmt: skip
async def test_bad_grid_features_are_named_and_nothing_changes(api, mutate, field):
    await _put_grid(api)
    broken = json.loads(json.dumps(DEMO_GRID))
    mutate(broken["features"][-1])
    response = await api.client.put(
        "/api/v1/grid", json=broken, headers=api.as_role(Role.INSTALLER)
    )
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert errors[0]["row"] == len(DEMO_GRID["features"]) - 1
    index = len(DEMO_GRID["features"]) - 1
    assert errors[0]["field"].startswith(f"features[{index}].{field}")
    grid = (await api.client.get("/api/v1/grid", headers=api.as_role(Role.VIEWER))).json()
    assert len(grid["features"]) == len(DEMO_GRID["features"])


async def test_coordinates_outside_the_unit_warn(api):
    await _put_grid(api)
    sensor = {"id": "RG-1", "kind": "rain_gauge", "grid": "110101001001001"}
    inside = await api.client.post(
        "/api/v1/sensors", json=sensor | {"location": INSIDE}, headers=api.as_role(Role.INSTALLER)
    )
    assert inside.json()["warnings"] == []
    outside = await api.client.post(
        "/api/v1/sensors",
        json=sensor | {"id": "RG-2", "location": OUTSIDE},
        headers=api.as_role(Role.INSTALLER),
    )
    assert outside.status_code == 201
    (warning,) = outside.json()["warnings"]
    assert "110101001001001" in warning


async def test_strict_mode_refuses_coordinates_outside_the_unit(strict_api):
    await _put_grid(strict_api)
    sensor = {"id": "RG-2", "kind": "rain_gauge", "grid": "110101001001001", "location": OUTSIDE}
    response = await strict_api.client.post(
        "/api/v1/sensors", json=sensor, headers=strict_api.as_role(Role.INSTALLER)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "location"


async def test_device_profiles_are_listed(api):
    listed = (
        await api.client.get("/api/v1/device-profiles", headers=api.as_role(Role.VIEWER))
    ).json()
    names = [profile["name"] for profile in listed["items"]]
    assert names == sorted(
        [
            "ai-camera",
            "elevator-board",
            "inclinometer-2axis",
            "tipping-bucket-0.2",
            "traction-controller",
        ]
    )
    gauge = next(p for p in listed["items"] if p["name"] == "tipping-bucket-0.2")
    assert gauge["protocol"] == "modbus"
    assert gauge["registers"][0]["count"] == 2
