"""GET /api/v1/kpi on SQLite and PostgreSQL against a hand-computed fixture, data/kpi_cases.json."""

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gridwatch.api.roles import ROLE_MATRIX, Permission, Role
from gridwatch.cases.kpi import percentile_cont
from gridwatch.cases.models import Case
from tests.integration.apiclient import running_api

FIXTURE = json.loads((Path(__file__).parent / "data" / "kpi_cases.json").read_text())
PERIOD = {"from": FIXTURE["from"], "to": FIXTURE["to"]}
RATES = (
    "closure_rate", "on_time_closure_rate", "rework_rate", "timely_dispatch_rate",
    "auto_dispatch_accuracy",
)  # fmt: skip
ZERO = {
    "reported": 0, "dispatched": 0, "closed": 0, "cancelled": 0, "due_to_close": 0,
    **dict.fromkeys(RATES),
    "time_to_dispatch_s": {"mean": None, "p90": None},
    "time_to_close_s": {"mean": None, "p90": None},
    "overdue": 0,
}  # fmt: skip


def expected(figures):
    """The fixture's figures with each [numerator, denominator] divided as the API does."""
    return {
        name: value[0] / value[1] if name in RATES and value is not None else value
        for name, value in figures.items()
    }


def _at(spec, name):
    opened = datetime.fromisoformat(spec["opened_at"])
    seconds = spec.get(f"{name}_s")
    return None if seconds is None else opened + timedelta(seconds=seconds)


def _case(spec):
    opened = datetime.fromisoformat(spec["opened_at"])
    return Case(
        id=spec["id"],
        status=spec["status"],
        severity="yellow",
        category="event:0102",
        kind="manual",
        title=f"fixture {spec['id']}",
        grid=spec["grid"],
        unit="sanitation" if "dispatched_s" in spec else None,
        opened_at=opened,
        updated_at=opened,
        last_seen_at=opened,
        due_at=_at(spec, "due"),
        dispatch_due_at=_at(spec, "dispatch_due"),
        dispatched_at=_at(spec, "dispatched"),
        closed_at=_at(spec, "closed"),
        overdue=spec.get("overdue", False),
        supervision_level=1 if spec.get("overdue") else 0,
        overdue_count=1 if spec.get("ever_overdue") else 0,
        auto_dispatched=spec.get("auto_dispatched", False),
        reassignments=spec.get("reassignments", 0),
        rework_count=spec.get("rework_count", 0),
        drill=spec.get("drill", False),
        maintenance=spec.get("maintenance", False),
    )


@pytest.fixture
async def api(sessions):
    async with sessions() as session, session.begin():
        session.add_all([_case(spec) for spec in FIXTURE["cases"]])
    async with running_api(sessions) as api:
        yield api


async def _kpi(api, role=Role.VIEWER, **params):
    return await api.client.get("/api/v1/kpi", params=params, headers=api.as_role(role))


async def test_totals_and_hotspots_match_the_hand_computed_fixture(api):
    response = await _kpi(api, **PERIOD)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["group_by"], body["groups"]) == (
        "2026-07-01T00:00:00+08:00", "2026-08-01T00:00:00+08:00", None, [],
    )  # fmt: skip
    assert body["totals"] == expected(FIXTURE["totals"])
    assert body["hotspots"] == FIXTURE["hotspots"]


@pytest.mark.parametrize("group_by", ["district", "street"])
async def test_each_group_matches_the_hand_computed_fixture(api, group_by):
    response = await _kpi(api, **PERIOD, group_by=group_by)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["groups"] == [expected(group) for group in FIXTURE["groups"][group_by]]
    assert body["totals"] == expected(FIXTURE["totals"])


@pytest.mark.parametrize(
    ("group_by", "keys"),
    [
        ("community", ["110101001001", "110101001002", "110101002001", "110102003004", None]),
        ("grid", ["110101001001001", "110101001002003", "110101002001001", "110102003004005",
                  None]),
        ("unit", ["sanitation", None]),
        ("category", ["event:0102"]),
        ("kind", ["manual"]),
    ],
)  # fmt: skip
async def test_other_groupings_partition_the_same_cases(api, group_by, keys):
    body = (await _kpi(api, **PERIOD, group_by=group_by)).json()

    assert [group["key"] for group in body["groups"]] == keys
    assert sum(group["reported"] for group in body["groups"]) == body["totals"]["reported"] == 12


async def test_hotspots_are_the_top_n(api):
    body = (await _kpi(api, **PERIOD, top=3)).json()

    assert body["hotspots"] == FIXTURE["hotspots"][:3]
    assert (await _kpi(api, **PERIOD, top=0)).json()["hotspots"] == []


@pytest.mark.parametrize(("queue", "reported"), [("city", 12), ("maintenance", 1), ("all", 13)])
async def test_the_queue_picks_city_or_maintenance_cases_never_drills(api, queue, reported):
    body = (await _kpi(api, **PERIOD, queue=queue)).json()

    assert body["totals"]["reported"] == reported


async def test_an_empty_period_gives_zeros_and_null_rates(api):
    response = await _kpi(
        api, **{"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"}, group_by="street"
    )

    assert response.status_code == 200, response.text
    assert response.json()["totals"] == ZERO
    assert (response.json()["groups"], response.json()["hotspots"]) == ([], [])


@pytest.mark.parametrize(
    ("role", "status"), [(role, 403 if role is Role.INSTALLER else 200) for role in Role]
)
async def test_every_role_but_installer_reads_kpis(api, role, status):
    response = await _kpi(api, role, **PERIOD)

    assert response.status_code == status
    assert (role in ROLE_MATRIX[Permission.KPI_READ]) is (status == 200)


async def test_the_route_publishes_its_permission(api):
    openapi = (await api.client.get("/openapi.json")).json()

    assert openapi["paths"]["/api/v1/kpi"]["get"]["x-permission"] == "kpi:read"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"to": FIXTURE["to"]}, "query.from"),
        ({"from": FIXTURE["from"]}, "query.to"),
        ({"from": "2026-07-01T00:00:00", "to": FIXTURE["to"]}, "query.from"),
        ({"from": "yesterday", "to": FIXTURE["to"]}, "query.from"),
        ({"from": FIXTURE["to"], "to": FIXTURE["from"]}, "query.to"),
        ({"from": FIXTURE["from"], "to": FIXTURE["from"]}, "query.to"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2027-01-02T00:00:01Z"}, "query.to"),
        ({**PERIOD, "group_by": "city"}, "query.group_by"),
        ({**PERIOD, "queue": "test"}, "query.queue"),
        ({**PERIOD, "top": "-1"}, "query.top"),
    ],
)
async def test_unusable_parameters_are_422_naming_the_parameter(api, params, field):
    response = await _kpi(api, **params)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in response.json()["errors"]] == [field]


async def test_a_full_leap_year_is_allowed(api):
    response = await _kpi(api, **{"from": "2028-01-01T00:00:00Z", "to": "2029-01-01T00:00:00Z"})

    assert response.status_code == 200, response.text


def test_percentile_cont_of_nothing_is_none():
    assert percentile_cont([], 0.9) is None


@pytest.mark.parametrize(
    ("values", "p90"),
    [([7.0], 7.0), ([1.0, 60.0], 54.1), ([100.0, 3600.0, 5400.0, 7200.0], 6660.0)],
)
def test_percentile_cont_interpolates_between_ranks(values, p90):
    assert percentile_cont(values, 0.9) == pytest.approx(p90)
