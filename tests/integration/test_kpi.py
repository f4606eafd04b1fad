"""GET /api/v1/kpi on SQLite and PostgreSQL against a hand-computed fixture, data/kpi_cases.json,
and on PostgreSQL against the README's formulas written as one SQL query (percentile_cont, avg).
"""

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from gridwatch.api.roles import ROLE_MATRIX, Permission, Role
from gridwatch.cases import kpi
from gridwatch.cases.kpi import percentile_cont
from gridwatch.cases.models import Case, CaseStatus
from gridwatch.gateway.db import create_engine, migrate, session_factory
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


# The README's formulas, case by case, as PostgreSQL computes them: the oracle for the report.
ORACLE = """
SELECT substr(grid, 1, 9) AS key, grouping(substr(grid, 1, 9)) AS is_total,
  count(*) AS reported,
  count(dispatched_at) AS dispatched,
  count(*) FILTER (WHERE status IN ('closed', 'evaluated')) AS closed,
  count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
  count(*) FILTER (WHERE status IN ('closed', 'evaluated')
    OR status NOT IN ('closed', 'evaluated', 'cancelled') AND due_at < :end) AS due_to_close,
  count(*) FILTER (WHERE status IN ('closed', 'evaluated') AND overdue_count = 0) AS on_time,
  count(*) FILTER (WHERE status IN ('closed', 'evaluated') AND rework_count > 0) AS reworked,
  count(*) FILTER (WHERE dispatched_at IS NOT NULL AND dispatch_due_at IS NOT NULL) AS timed,
  count(*) FILTER (WHERE dispatched_at <= dispatch_due_at) AS in_time,
  count(*) FILTER (WHERE auto_dispatched) AS auto,
  count(*) FILTER (WHERE auto_dispatched AND reassignments = 0) AS kept,
  count(*) FILTER (WHERE status NOT IN ('closed', 'evaluated', 'cancelled') AND overdue) AS overdue,
  avg(date_part('epoch', dispatched_at - opened_at)) AS dispatch_mean,
  percentile_cont(0.9) WITHIN GROUP (ORDER BY date_part('epoch', dispatched_at - opened_at))
    AS dispatch_p90,
  avg(date_part('epoch', closed_at - opened_at))
    FILTER (WHERE status IN ('closed', 'evaluated')) AS close_mean,
  percentile_cont(0.9) WITHIN GROUP (ORDER BY date_part('epoch', closed_at - opened_at))
    FILTER (WHERE status IN ('closed', 'evaluated')) AS close_p90
FROM cases
WHERE opened_at >= :start AND opened_at < :end AND drill IS false AND maintenance IS false
GROUP BY GROUPING SETS ((substr(grid, 1, 9)), ())
"""
START = datetime(2026, 3, 1, tzinfo=UTC)
END = START + timedelta(days=30)


def _random_case(rng, n):
    opened = START + timedelta(microseconds=rng.randrange(31 * 86400 * 10**6)) - timedelta(days=1)
    street = rng.choice(["110101001", "110101002", "110102003", "110105007"])

    def later(most_s):
        # Whole microseconds, and now and then the same duration twice (ties in the ranks).
        return opened + timedelta(microseconds=rng.choice([rng.randrange(most_s * 10**6), 5e8]))

    status = rng.choice(list(CaseStatus))
    dispatched = later(3600) if rng.random() < 0.8 else None
    return Case(
        id=f"R{n:04d}",
        status=status.value,
        severity="yellow",
        category="event:0102",
        kind="manual",
        title=f"random {n}",
        grid=None if rng.random() < 0.05 else f"{street}{rng.randrange(1, 4):03d}001",
        opened_at=opened,
        updated_at=opened,
        last_seen_at=opened,
        due_at=later(86400 * 40) if rng.random() < 0.7 else None,
        dispatch_due_at=later(1800) if rng.random() < 0.8 else None,
        dispatched_at=dispatched,
        closed_at=later(86400 * 10) if rng.random() < 0.8 else None,
        overdue=rng.random() < 0.3,
        overdue_count=rng.choice([0, 0, 1, 2]),
        auto_dispatched=dispatched is not None and rng.random() < 0.5,
        reassignments=rng.choice([0, 0, 1]),
        rework_count=rng.choice([0, 0, 0, 1]),
        drill=rng.random() < 0.05,
        maintenance=rng.random() < 0.05,
    )


def _oracle_figures(row):
    def rate(part, whole):
        return None if whole == 0 else part / whole

    def seconds(value):
        return None if value is None else round(value, 3)

    return {
        "reported": row.reported, "dispatched": row.dispatched, "closed": row.closed,
        "cancelled": row.cancelled, "due_to_close": row.due_to_close,
        "closure_rate": rate(row.closed, row.due_to_close),
        "on_time_closure_rate": rate(row.on_time, row.due_to_close),
        "rework_rate": rate(row.reworked, row.closed),
        "timely_dispatch_rate": rate(row.in_time, row.timed),
        "auto_dispatch_accuracy": rate(row.kept, row.auto),
        "time_to_dispatch_s": {
            "mean": seconds(row.dispatch_mean), "p90": seconds(row.dispatch_p90),
        },
        "time_to_close_s": {"mean": seconds(row.close_mean), "p90": seconds(row.close_p90)},
        "overdue": row.overdue,
    }  # fmt: skip


async def test_the_report_is_the_formulas_as_postgresql_computes_them(postgres_url):
    engine = create_engine(postgres_url)
    await migrate(engine)
    sessions = session_factory(engine)
    rng = random.Random(2026)
    async with sessions() as session, session.begin():
        session.add_all([_random_case(rng, n) for n in range(600)])
    async with sessions() as session:
        rows = (await session.execute(text(ORACLE), {"start": START, "end": END})).all()
    query = kpi.KpiQuery(start=START, end=END, group_by=kpi.GroupBy.STREET)
    report = (await kpi.report(sessions=sessions, query=query)).model_dump(mode="json")
    await engine.dispose()

    groups = {
        row.key: {"key": row.key, **_oracle_figures(row)} for row in rows if row.is_total == 0
    }
    (totals,) = [_oracle_figures(row) for row in rows if row.is_total == 1]
    assert len(groups) == 5
    assert report["groups"] == [groups[key] for key in sorted(groups, key=_null_last)]
    assert report["totals"] == totals


def _null_last(key):
    return key is None, key or ""
