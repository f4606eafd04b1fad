"""The installer's workflow over the API, on SQLite and PostgreSQL."""

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from gridwatch.api.roles import ROLE_MATRIX, Permission, Role
from gridwatch.domain import Channel, Reading
from gridwatch.registry.models import GridUnitRow, SensorRow
from gridwatch.rules import load_rule_files
from tests.integration.apiclient import running_api

RULE = """
rules:
  - id: burst
    title: "Rain at {sensor_id}: {value} mm"
    category: "event:0401"
    applies_to: {kinds: [rain_gauge]}
    condition: {type: threshold, field: rain_mm, levels: {blue: 2.0, red: 8.0}, clear: 0.5}
"""
GAUGE = {"id": "RG-1", "kind": "rain_gauge", "grid": "110101001001001",
         "location": {"lat": 39.93, "lon": 116.42, "address": "Dongsi"}}  # fmt: skip


class Profile:
    """A stand-in device profile; the real ones are data files checked elsewhere."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def public_dict(self) -> dict[str, object]:
        return {"kind": self.kind}


@pytest.fixture
async def api(sessions, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    profiles = {
        "tipping-bucket-0.2": Profile("rain_gauge"),
        "traction-controller": Profile("elevator"),
    }
    async with running_api(
        sessions, rules=tuple(load_rule_files([rules])), profiles=profiles
    ) as api:
        yield api


async def _count_sensors(sessions) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(SensorRow)) or 0)


async def test_every_api_route_declares_a_permission_and_the_matrix_holds(api):
    openapi = (await api.client.get("/openapi.json")).json()
    operations = [
        (path, method, operation.get("x-permission"))
        for path, methods in openapi["paths"].items()
        for method, operation in methods.items()
        if path.startswith("/api/") or path == "/metrics"
    ]
    assert operations
    assert [(p, m) for p, m, permission in operations if permission is None] == []
    mismatches = []
    for path, method, permission in operations:
        url = path.replace("{sensor_id}", "NOPE-1").replace("{case_id}", "GW-none")
        for role in Role:
            response = await api.client.request(method, url, headers=api.as_role(role), json={})
            allowed = role in ROLE_MATRIX[Permission(permission)]
            if (response.status_code == 403) == allowed:
                mismatches.append((method, path, role.value, response.status_code))
    assert mismatches == []


async def test_register_read_change_and_retire(api, sessions):
    installer = api.as_role(Role.INSTALLER)
    created = await api.client.post("/api/v1/sensors", json=GAUGE, headers=installer)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/v1/sensors/RG-1"
    assert created.json()["status"] == "draft"
    assert api.context.registry.get("RG-1") is not None  # the gateway sees it at once
    fetched = await api.client.get("/api/v1/sensors/RG-1", headers=api.as_role(Role.VIEWER))
    assert fetched.json()["location"]["address"] == "Dongsi"
    moved = await api.client.patch(
        "/api/v1/sensors/RG-1", json={"status": "active", "owner": "Water Authority"},
        headers=installer,
    )  # fmt: skip
    assert (moved.json()["status"], moved.json()["owner"]) == ("active", "Water Authority")
    retired = await api.client.patch(
        "/api/v1/sensors/RG-1", json={"status": "retired"}, headers=installer
    )
    assert retired.json()["status"] == "retired"
    assert api.context.registry.get("RG-1").status == "retired"
    back = await api.client.patch(
        "/api/v1/sensors/RG-1", json={"status": "active"}, headers=installer
    )
    assert back.status_code == 409
    assert back.json()["errors"] == [
        {"field": "status", "reason": "a retired sensor cannot become active"}
    ]
    deleted = await api.client.delete("/api/v1/sensors/RG-1", headers=installer)
    assert deleted.status_code == 409
    assert await _count_sensors(sessions) == 1


async def test_a_draft_sensor_can_be_deleted(api, sessions):
    installer = api.as_role(Role.INSTALLER)
    await api.client.post("/api/v1/sensors", json=GAUGE, headers=installer)
    assert (await api.client.delete("/api/v1/sensors/RG-1", headers=installer)).status_code == 204
    assert await _count_sensors(sessions) == 0
    assert api.context.registry.get("RG-1") is None


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"kind": "volcano"}, "kind", "Input should be"),
        ({"location": {"lat": 91, "lon": 116.4}}, "location.lat", "less than or equal to 90"),
        ({"location": {"lat": 39.9, "lon": -181}}, "location.lon", "greater than or equal"),
        ({"grid": "1101010010010"}, "grid", "String should match pattern"),
        ({"grid": "11010100100100x"}, "grid", "String should match pattern"),
        ({"id": "-starts-with-dash"}, "id", "String should match pattern"),
        ({"interval_s": 0}, "interval_s", "greater than 0"),
        ({"protocol": {"type": "modbus", "host": "10.0.0.9", "profile": "no-such"}},
         "protocol.profile", "unknown device profile 'no-such'"),
        ({"protocol": {"type": "modbus", "host": "10.0.0.9", "profile": "traction-controller"}},
         "protocol.profile", "is for elevator, not rain_gauge"),
        ({"protocol": {"type": "pigeon"}}, "protocol", "does not match any of the expected"),
        ({"calibration": {"baseline_x_deg": 0.1}}, "calibration", "unknown keys"),
        ({"surprise": 1}, "surprise", "Extra inputs are not permitted"),
    ],
)  # fmt: skip
async def test_bad_fields_are_422_naming_the_field(api, sessions, changes, field, reason):
    response = await api.client.post(
        "/api/v1/sensors", json=GAUGE | changes, headers=api.as_role(Role.INSTALLER)
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = [e for e in response.json()["errors"] if e["field"].endswith(field)]
    assert reason in error["reason"]
    assert await _count_sensors(sessions) == 0


async def test_duplicate_ids_and_unknown_grid_units(api, sessions):
    installer = api.as_role(Role.INSTALLER)
    await api.client.post("/api/v1/sensors", json=GAUGE, headers=installer)
    duplicate = await api.client.post("/api/v1/sensors", json=GAUGE, headers=installer)
    assert duplicate.status_code == 422
    assert duplicate.json()["errors"] == [
        {"field": "id", "reason": "sensor RG-1 is already registered"}
    ]
    async with sessions() as session, session.begin():
        session.add(GridUnitRow(code="110101001001001", name="Dongsi 1", level="grid", parent=None))
    unknown = await api.client.post(
        "/api/v1/sensors", json=GAUGE | {"id": "RG-2", "grid": "110101001009009"}, headers=installer
    )
    assert unknown.json()["errors"] == [
        {"field": "grid", "reason": "unknown grid unit 110101001009009"}
    ]


async def test_import_is_all_or_nothing_with_a_report_per_row(api, sessions):
    rows = [GAUGE, GAUGE | {"id": "RG-2", "kind": "magic"}, GAUGE | {"id": "RG-1"},
            GAUGE | {"id": "RG-4", "location": {"lat": 100, "lon": 1}}]  # fmt: skip
    response = await api.client.post(
        "/api/v1/sensors/import", content=json.dumps(rows),
        headers=api.as_role(Role.INSTALLER) | {"content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [
        (2, "kind"), (3, "id"), (4, "location.lat"),
    ]  # fmt: skip
    assert "duplicate id, also in row 1" in errors[1]["reason"]
    assert await _count_sensors(sessions) == 0


CSV = """id,kind,model,grid,lat,lon,address,interval_s,status,tags,baseline_x_deg,baseline_y_deg
RG-1,rain_gauge,tipping-bucket-0.2,110101001001001,39.93,116.42,Dongsi,300,active,site=underpass;zone=A,,
BB-1,tilt,inclinometer-2axis,110101001001002,39.931,116.418,"Roof, No. 3",600,draft,,0.12,-0.05
"""


async def test_csv_import_registers_everything(api, sessions):
    response = await api.client.post(
        "/api/v1/sensors/import", content=CSV.encode(),
        headers=api.as_role(Role.INSTALLER) | {"content-type": "text/csv"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json() == {"imported": 2, "warnings": []}
    billboard = (
        await api.client.get("/api/v1/sensors/BB-1", headers=api.as_role(Role.VIEWER))
    ).json()
    assert billboard["calibration"] == {"baseline_x_deg": 0.12, "baseline_y_deg": -0.05}
    assert billboard["location"]["address"] == "Roof, No. 3"
    gauge = api.context.registry.get("RG-1")
    assert gauge is not None
    assert gauge.tags == {"site": "underpass", "zone": "A"}
    listed = (
        await api.client.get("/api/v1/sensors?status=active", headers=api.as_role(Role.VIEWER))
    ).json()
    assert [s["id"] for s in listed["items"]] == ["RG-1"]


@pytest.mark.parametrize(
    ("body", "content_type", "field", "reason"),
    [
        (b"id,colour\nRG-1,red\n", "text/csv", "header", "unknown columns ['colour']"),
        (b"kind\nrain_gauge\n", "text/csv", "header", "an 'id' column is required"),
        (b"{not json", "application/json", "body", "is not valid JSON"),
        (b'{"sensors": 3}', "application/json", "body", "must be a JSON list"),
        (b"[]", "application/json", "body", "no rows to import"),
        (json.dumps([GAUGE] * 10_001).encode(), "application/json", "body", "at most 10000"),
    ],
)
async def test_import_refuses_malformed_files(api, body, content_type, field, reason):
    response = await api.client.post(
        "/api/v1/sensors/import", content=body,
        headers=api.as_role(Role.INSTALLER) | {"content-type": content_type},
    )  # fmt: skip
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["field"], reason in error["reason"]) == (field, True)


async def test_commissioning_reports_the_reading_and_the_rules_it_would_fire(api):
    installer = api.as_role(Role.INSTALLER)
    await api.client.post("/api/v1/sensors", json=GAUGE, headers=installer)
    empty = (await api.client.post("/api/v1/sensors/RG-1/commission", headers=installer)).json()
    assert (empty["status"], empty["green"], empty["reading"]) == ("commissioning", False, None)
    now = datetime.now(UTC)
    api.context.latest.put(
        Reading("RG-1", "rain_gauge", Channel.TELEMETRY, now, now, {"rain_mm": 3.0})
    )
    report = (
        await api.client.post(
            "/api/v1/sensors/RG-1/commission", json={"wait_s": 0}, headers=installer
        )
    ).json()
    assert report["green"] is True
    assert report["reading"]["values"] == {"rain_mm": 3.0}
    assert report["rules"] == [
        {"rule_id": "burst", "fires": True, "severity": "blue", "title": "Rain at RG-1: 3 mm"}
    ]
