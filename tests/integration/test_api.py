"""The HTTP API over a real database: auth, problem+json errors, cases and sensors."""

import httpx
import pytest

from gridwatch.api import ApiContext, create_app
from gridwatch.api.keys import digest
from gridwatch.cases.service import apply_alarm
from gridwatch.domain import AlarmTransition, Severity
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.gateway.rejects import RejectLog
from gridwatch.gateway.telemetry import LatestReadings
from tests.integration.factories import alarm, alarm_service, rain_sensor
from tests.telemetry.support import NO_TELEMETRY

KEY = "test-admin-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def client(sessions):
    async def ready() -> dict[str, bool]:
        return {"database": True, "mqtt": False}

    context = ApiContext(
        sessions=sessions,
        registry=SensorRegistry(),
        latest=LatestReadings(),
        telemetry=NO_TELEMETRY,
        rejects=RejectLog(None),
        metrics=Metrics(),
        admin_key_digest=digest(KEY),
        readiness=ready,
        alarms=alarm_service(),
    )
    transport = httpx.ASGITransport(app=create_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://gridwatch") as client:
        yield client


@pytest.fixture
async def two_cases(sessions):
    for event in (
        alarm(AlarmTransition.RAISED, Severity.BLUE, sensor_id="RG-1"),
        alarm(AlarmTransition.RAISED, Severity.RED, sensor_id="RG-2", seconds=60),
    ):
        async with sessions() as session, session.begin():
            await apply_alarm(session=session, alarm=event, sensor=rain_sensor(event.sensor_id))


@pytest.mark.parametrize(
    "path", ["/api/v1/cases", "/api/v1/cases/x", "/api/v1/sensors", "/metrics"]
)
@pytest.mark.parametrize(
    ("headers", "detail"),
    [({}, "an API key is required"), ({"Authorization": "Bearer wrong"}, "not valid")],
)
async def test_every_call_but_health_needs_a_key(client, path, headers, detail):
    response = await client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert detail in response.json()["detail"]


async def test_health_is_open_and_readiness_reports_checks(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": True, "mqtt": False}


@pytest.mark.usefixtures("two_cases")
async def test_list_cases_newest_first_with_filters(client):
    page = (await client.get("/api/v1/cases", headers=AUTH)).json()
    assert page["total"] == 2
    assert [c["sensor_id"] for c in page["items"]] == ["RG-2", "RG-1"]
    red = (await client.get("/api/v1/cases?severity=red", headers=AUTH)).json()
    assert [c["sensor_id"] for c in red["items"]] == ["RG-2"]
    assert "history" not in red["items"][0]
    by_sensor = (await client.get("/api/v1/cases?sensor_id=RG-1&open=true", headers=AUTH)).json()
    assert by_sensor["total"] == 1


@pytest.mark.usefixtures("two_cases")
async def test_get_case_has_history(client):
    listed = (await client.get("/api/v1/cases?sensor_id=RG-2", headers=AUTH)).json()
    case_id = listed["items"][0]["id"]
    case = (await client.get(f"/api/v1/cases/{case_id}", headers=AUTH)).json()
    assert case["id"] == case_id
    assert case["status"] == "reported"
    assert [h["action"] for h in case["history"]] == ["report"]


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/api/v1/cases?severity=purple", 422, "query.severity"),
        ("/api/v1/cases?limit=0", 422, "query.limit"),
        ("/api/v1/cases/GW-nope", 404, None),
    ],
)
async def test_errors_are_problem_json_naming_the_field(client, path, status, field):
    response = await client.get(path, headers=AUTH)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    if field is not None:
        assert problem["errors"][0]["field"] == field


async def test_openapi_lists_routes_with_their_permissions(client):
    openapi = (await client.get("/openapi.json")).json()
    assert openapi["paths"]["/api/v1/cases/{case_id}"]["get"]["x-permission"] == "cases:read"
