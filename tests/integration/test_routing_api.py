"""The routing table through the API: what is in force, and where a case would go."""

import pytest

from gridwatch.api.roles import Role
from gridwatch.cases.policy import load_case_policy
from gridwatch.cases.routing import DEMO_ROUTING_PATH
from tests.integration.apiclient import running_api

DONGCHENG_UNIT = "110101001001001"
EMERGENCY = "东城区应急管理局 Dongcheng emergency management bureau"


@pytest.fixture
async def api(sessions):
    policy = load_case_policy(routing_file=DEMO_ROUTING_PATH)
    async with running_api(sessions, case_policy=policy) as api:
        yield api


async def _get(api, path, role=Role.VIEWER, **params):
    return await api.client.get(path, params=params, headers=api.as_role(role))


async def test_the_table_in_force_is_listed(api):
    table = (await _get(api, "/api/v1/routing")).json()
    assert table["configured"] is True
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
            "configured": False, "owners": {}, "routes": [],
        }  # fmt: skip
        answer = (await _get(api, "/api/v1/routing/route", category="event:0402")).json()
        assert answer["unit"] is None
