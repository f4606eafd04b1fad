"""GET /api/v1/sensors/{id}/readings on the embedded store: parameters, answers, errors."""

from datetime import UTC, datetime, timedelta

import pytest

from gridwatch.api.roles import Role
from gridwatch.domain import Channel, Reading, Sensor
from gridwatch.gateway.telemetry.schema import PointBuilder
from tests.integration.apiclient import running_api
from tests.telemetry.support import embedded_telemetry

T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
GAUGE = {"id": "RG-1", "kind": "rain_gauge", "grid": "110101001001001", "status": "active"}
ELEVATOR = {"id": "EL-1", "kind": "elevator", "grid": "110101001001001", "status": "active"}


@pytest.fixture
async def api(sessions, tmp_path):
    async with (
        embedded_telemetry(tmp_path) as telemetry,
        running_api(sessions, telemetry=telemetry.reader) as api,
    ):
        admin = api.as_role(Role.ADMIN)
        for sensor in (GAUGE, ELEVATOR):
            created = await api.client.post("/api/v1/sensors", json=sensor, headers=admin)
            assert created.status_code == 201, created.text
        builder = PointBuilder()
        gauge = Sensor.model_validate(GAUGE)
        elevator = Sensor.model_validate(ELEVATOR)
        points = []
        for minute in range(120):  # two hours, one reading a minute
            ts = T0 + timedelta(minutes=minute)
            points.append(
                builder.point(
                    gauge, Reading("RG-1", "rain_gauge", Channel.TELEMETRY, ts, ts,
                                   {"rain_mm": 0.5 if minute % 2 else 0.0})
                )
            )  # fmt: skip
        ts = T0 + timedelta(minutes=30)
        points.append(
            builder.point(
                elevator,
                Reading("EL-1", "elevator", Channel.EVENT, ts, ts, {"fault": "entrapment"}),
            )
        )
        await telemetry.writer.submit(points)
        yield api


def _params(**extra: object) -> dict[str, object]:
    return {"from": T0.isoformat(), "to": (T0 + timedelta(hours=2)).isoformat()} | extra


async def test_raw_readings_are_the_newest_oldest_first(api):
    page = await api.client.get(
        "/api/v1/sensors/RG-1/readings",
        params=_params(limit=3),
        headers=api.as_role(Role.VIEWER),
    )
    assert page.status_code == 200, page.text
    body = page.json()
    assert (body["measurement"], body["agg"], body["every"]) == ("rain_gauge", None, None)
    assert [row["time"] for row in body["rows"]] == [
        "2026-07-20T09:57:00Z", "2026-07-20T09:58:00Z", "2026-07-20T09:59:00Z",
    ]  # fmt: skip
    assert [row["values"] for row in body["rows"]] == [
        {"rain_mm": 0.5}, {"rain_mm": 0.0}, {"rain_mm": 0.5},
    ]  # fmt: skip


async def test_hourly_sums_are_windows_stamped_with_their_start(api):
    page = await api.client.get(
        "/api/v1/sensors/RG-1/readings",
        params=_params(every="1h", agg="sum"),
        headers=api.as_role(Role.VIEWER),
    )
    assert page.status_code == 200, page.text
    assert page.json()["rows"] == [
        {"time": "2026-07-20T08:00:00Z", "values": {"rain_mm": 15.0}},
        {"time": "2026-07-20T09:00:00Z", "values": {"rain_mm": 15.0}},
    ]


async def test_events_are_read_on_their_channel(api):
    page = await api.client.get(
        "/api/v1/sensors/EL-1/readings",
        params=_params(channel="event"),
        headers=api.as_role(Role.VIEWER),
    )
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["measurement"] == "events"
    assert body["rows"] == [
        {"time": "2026-07-20T08:30:00Z", "values": {"fault": "entrapment", "count": 1}}
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"every": "1h"}, "agg"),
        ({"every": "soon", "agg": "mean"}, "every"),
        ({"every": "10ms", "agg": "mean"}, "every"),
        ({"from": "2026-07-20T08:00:00", "to": "2026-07-20T09:00:00Z"}, "from"),
        ({"from": "2026-07-20T09:00:00Z", "to": "2026-07-20T08:00:00Z"}, "from"),
        ({"agg": "median"}, "agg"),
        ({"limit": 0}, "limit"),
        ({"channel": "gossip"}, "channel"),
    ],
)
async def test_a_bad_parameter_is_a_422_naming_it(api, params, field):
    answer = await api.client.get(
        "/api/v1/sensors/RG-1/readings",
        params=_params() | params,
        headers=api.as_role(Role.VIEWER),
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert field in answer.json()["detail"]


async def test_an_unknown_sensor_is_a_404(api):
    answer = await api.client.get("/api/v1/sensors/NOPE/readings", headers=api.as_role(Role.VIEWER))
    assert answer.status_code == 404
