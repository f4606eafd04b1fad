"""The routing table through the API: what is in force, where a case would go, and changing it."""

import asyncio

import pytest

from gridwatch.api.roles import Role
from gridwatch.cases.policy import load_case_policy
from gridwatch.cases.routing import DEMO_ROUTING_PATH
from gridwatch.domain import AlarmTransition
from gridwatch.gateway.alarms import RaisedAlarms
from gridwatch.gateway.metrics import Metrics
from gridwatch.service.case_sink import DatabaseCaseSink
from tests.integration.apiclient import running_api
from tests.integration.factories import alarm, rain_sensor

DONGCHENG_UNIT = "110101001001001"
EMERGENCY = "东城区应急管理局 Dongcheng emergency management bureau"
NEW_UNIT = "dongcheng-duty-team"
NEW_TABLE = {
    "owners": {"Capital Elevator Maintenance Ltd.": "capital-elevator"},
    "routes": [
        {"category": "event:04*", "grid": "110101", "unit": NEW_UNIT},
        {"category": "component:0601", "by_owner": True},
    ],
}


@pytest.fixture
async def api(sessions):
    policy = load_case_policy(routing_file=DEMO_ROUTING_PATH)
    async with running_api(sessions, case_policy=policy) as api:
        yield api


async def _get(api, path, role=Role.VIEWER, **params):
    return await api.client.get(path, params=params, headers=api.as_role(role))


async def _put(api, body, *, if_match='"0"', role=Role.ADMIN):
    headers = api.as_role(role) | ({} if if_match is None else {"If-Match": if_match})
    return await api.client.put("/api/v1/routing", json=body, headers=headers)


async def _delete(api, *, if_match, role=Role.ADMIN):
    headers = api.as_role(role) | {"If-Match": if_match}
    return await api.client.delete("/api/v1/routing", headers=headers)


async def _unit_for(api, category="event:0404", grid=DONGCHENG_UNIT):
    return (await _get(api, "/api/v1/routing/route", category=category, grid=grid)).json()["unit"]


# ------------------------------------------------------------------------------------- reading
async def test_the_table_in_force_is_listed(api):
    response = await _get(api, "/api/v1/routing")
    table = response.json()
    assert (table["configured"], table["source"], table["version"]) == (True, "file", 0)
    assert response.headers["ETag"] == '"0"'
    assert "updated_at" not in table  # nothing was ever changed through the API
    assert {"category": "maintenance:*", "by_owner": False} | {
        "unit": "城市运行管理中心 City operations centre, sensor maintenance"
    } in table["routes"]
    assert "Capital Elevator Maintenance Ltd." in table["owners"]


@pytest.mark.parametrize(
    ("params", "unit", "by_owner"),
    [
        # A crowd gathering in a Dongcheng unit grid: the district's entry for emergencies.
        ({"category": "event:0404", "grid": DONGCHENG_UNIT}, EMERGENCY, False),
        # An elevator fault with a listed maintenance company: the company, wherever it is.
        (
            {"category": "component:0601", "grid": DONGCHENG_UNIT,
             "owner": "Capital Elevator Maintenance Ltd."},
            "首都电梯维保 Capital Elevator Maintenance Ltd.",
            True,
        ),
        # Outside every entry's grid: an officer dispatches it.
        ({"category": "event:0402", "grid": "310101001001001"}, None, False),
    ],
)  # fmt: skip
async def test_where_a_case_would_go(api, params, unit, by_owner):
    answer = (await _get(api, "/api/v1/routing/route", **params)).json()
    assert (answer["unit"], answer["by_owner"]) == (unit, by_owner)
    assert answer["explanation"]


async def test_a_bad_grid_code_is_a_422_naming_it(api):
    response = await _get(api, "/api/v1/routing/route", category="event:0402", grid="12x")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.grid"


async def test_without_a_routing_file_nothing_is_routed(sessions):
    async with running_api(sessions) as api:
        assert (await _get(api, "/api/v1/routing")).json() == {
            "source": "none", "configured": False, "version": 0, "owners": {}, "routes": [],
        }  # fmt: skip
        answer = (await _get(api, "/api/v1/routing/route", category="event:0402")).json()
        assert answer["unit"] is None


# ------------------------------------------------------------------------------------ changing
async def test_a_new_table_routes_the_next_cases_at_once(api, sessions):
    put = await _put(api, NEW_TABLE)

    assert put.status_code == 200, put.text
    assert put.headers["ETag"] == '"1"'
    stored = put.json()
    assert (stored["source"], stored["version"], stored["configured"]) == ("api", 1, True)
    assert stored["updated_by"].startswith("key_")
    assert stored["routes"][1] == {"category": "component:0601", "by_owner": True}
    assert (await _get(api, "/api/v1/routing")).json() == stored
    # The preview, a manual report and an alarm's case all route by it, without a restart.
    assert await _unit_for(api) == NEW_UNIT
    report = {"category": "event:0404", "title": "Crowd at the gate", "grid": DONGCHENG_UNIT}
    reported = await api.client.post(
        "/api/v1/cases", json=report, headers=api.as_role(Role.OFFICER)
    )
    assert (reported.json()["status"], reported.json()["unit"]) == ("dispatched", NEW_UNIT)
    sink = DatabaseCaseSink(
        sessions=sessions, metrics=Metrics(), on_committed=lambda: None,
        policy=api.context.case_policy,
    )  # fmt: skip
    await sink([RaisedAlarms(rain_sensor(), [alarm(AlarmTransition.RAISED)])])
    page = (await _get(api, "/api/v1/cases", sensor_id="RG-1")).json()
    assert [(case["status"], case["unit"]) for case in page["items"]] == [("dispatched", NEW_UNIT)]


async def test_what_get_shows_can_be_edited_and_sent_back(api):
    shown = await _get(api, "/api/v1/routing")
    document = shown.json()
    document["routes"] = document["routes"][:2]

    put = await _put(api, document, if_match=shown.headers["ETag"])

    assert put.status_code == 200, put.text
    assert (put.json()["source"], put.json()["routes"]) == ("api", document["routes"])


async def test_a_bad_table_is_refused_naming_each_field(api):
    table = {
        "routes": [
            {"category": "event:04*", "grid": "1101010", "unit": NEW_UNIT},
            {"category": "ev*nt", "unit": "x"},
            {"category": "*", "grid": "110101"},
        ]
    }

    refused = await _put(api, table)

    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert [(e["field"], e["reason"].split(" ")[0]) for e in problem["errors"]] == [
        ("routes.0.grid", "must"), ("routes.1.category", "'ev*nt'"), ("routes.2.unit", "is"),
    ]  # fmt: skip
    assert problem["detail"].startswith("routes.0.grid: must have 15 digits")
    # Nothing changed.
    assert (await _get(api, "/api/v1/routing")).json()["source"] == "file"
    assert await _unit_for(api) == EMERGENCY


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({}, "routes", "must be a list of entries"),
        ({"routes": {}}, "routes", "must be a list of entries"),
        (
            {"routes": [{"category": "*", "unit": "a"}, {"category": "*", "unit": "b"}]},
            "routes.1.grid", "repeats the category and grid unit of entry #1",
        ),
        ({"routes": [], "owner": {}}, "owner", "Extra inputs"),
        ({"routes": [], "owners": {"Acme": "a", "acme ": "b"}}, "owners", "listed twice"),
    ],
)  # fmt: skip
async def test_table_errors_name_their_field(api, body, field, reason):
    refused = await _put(api, body)
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["field"] == field
    assert reason in error["reason"]


async def test_a_change_needs_the_current_version(api):
    missing = await _put(api, NEW_TABLE, if_match=None)
    assert missing.status_code == 428
    malformed = await _put(api, NEW_TABLE, if_match="0")
    assert malformed.status_code == 400
    assert (await _put(api, NEW_TABLE, if_match='W/"0"')).status_code == 200

    stale = await _put(api, NEW_TABLE, if_match='"0"')

    assert stale.status_code == 412
    assert (stale.headers["ETag"], stale.json()["current_version"]) == ('"1"', 1)
    stale_delete = await _delete(api, if_match='"0"')
    assert stale_delete.status_code == 412
    assert (await _get(api, "/api/v1/routing")).json()["version"] == 1
    # `*` writes over whatever is stored.
    overwritten = await _put(api, NEW_TABLE | {"owners": {}, "routes": []}, if_match="*")
    assert (overwritten.status_code, overwritten.json()["version"]) == (200, 2)


async def test_of_two_changes_at_one_version_exactly_one_wins(api):
    other = {"routes": [{"category": "*", "unit": "elsewhere"}]}
    responses = await asyncio.gather(_put(api, NEW_TABLE), _put(api, other))
    assert sorted(r.status_code for r in responses) == [200, 412]
    assert (await _get(api, "/api/v1/routing")).json()["version"] == 1


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OFFICER, Role.DISPATCHER, Role.INSTALLER])
async def test_only_admins_change_the_table(api, role):
    assert (await _put(api, NEW_TABLE, role=role)).status_code == 403
    assert (await _delete(api, if_match='"0"', role=role)).status_code == 403
    assert (await _get(api, "/api/v1/routing")).json()["version"] == 0


async def test_dropping_the_stored_table_brings_back_the_file(api):
    await _put(api, NEW_TABLE)

    dropped = await _delete(api, if_match='"1"')

    assert dropped.status_code == 200, dropped.text
    assert dropped.headers["ETag"] == '"2"'
    answer = dropped.json()
    assert (answer["source"], answer["version"], answer["configured"]) == ("file", 2, True)
    assert answer["updated_by"].startswith("key_")
    assert await _unit_for(api) == EMERGENCY
    # Nothing is stored now: dropping again changes nothing, not even the version.
    again = await _delete(api, if_match='"2"')
    assert (again.status_code, again.json()["version"]) == (200, 2)


async def test_without_a_file_dropping_leaves_no_table(sessions):
    async with running_api(sessions) as api:
        await _put(api, NEW_TABLE)
        assert await _unit_for(api) == NEW_UNIT

        dropped = (await _delete(api, if_match='"1"')).json()

        assert (dropped["source"], dropped["configured"], dropped["routes"]) == ("none", False, [])
        assert await _unit_for(api) is None


async def test_the_openapi_document_shows_the_table_and_the_permission(api):
    openapi = (await api.client.get("/openapi.json")).json()
    operations = openapi["paths"]["/api/v1/routing"]
    assert (operations["put"]["x-permission"], operations["delete"]["x-permission"]) == (
        "routing:write", "routing:write",
    )  # fmt: skip
    schema = operations["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["routes"]
    assert set(schema["properties"]["routes"]["items"]["properties"]) == {
        "category", "grid", "unit", "by_owner",
    }  # fmt: skip
    assert {"412", "428", "503"} <= set(operations["put"]["responses"])
