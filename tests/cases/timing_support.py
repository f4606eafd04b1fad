"""Builders for the deadline, auto-dispatch and supervision tests: sensors, alarms, routes."""

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.cases import transitions
from gridwatch.cases.lifecycle import Action
from gridwatch.cases.models import Case
from gridwatch.cases.policy import CasePolicy, shipped_policy
from gridwatch.cases.requests import TransitionRequest
from gridwatch.cases.routing import RoutingInForce, build_routing
from gridwatch.cases.service import CaseChange, apply_alarm, get_case
from gridwatch.domain import AlarmEvent, AlarmTransition, Sensor, Severity
from tests.cases.support import ADMIN, VALID

BEIJING = ZoneInfo("Asia/Shanghai")
GRID = "110101001001001"  # Dongcheng, Demo Street, North community, grid 1
COMMUNITY, STREET, DISTRICT = GRID[:12], GRID[:9], GRID[:6]
ELEVATOR_CO = "Capital Elevator Maintenance Ltd."
ELEVATOR_UNIT = "capital-elevator"
ENTRAPMENT = "component:0601"

ROUTING = build_routing(
    {
        "owners": {ELEVATOR_CO: ELEVATOR_UNIT},
        "routes": [
            {"category": "event:04*", "grid": DISTRICT, "unit": "dongcheng-emergency"},
            {"category": "event:0102", "grid": STREET, "unit": "demo-street-sanitation"},
            {"category": ENTRAPMENT, "grid": DISTRICT, "by_owner": True, "unit": "dongcheng-sme"},
        ],
    }
)
ROUTED = replace(shipped_policy(), routing=RoutingInForce(ROUTING))


def sensor(sensor_id: str = "EL-1", *, kind: str = "elevator", owner: str | None = None) -> Sensor:
    """An active sensor in GRID."""
    return Sensor.model_validate({"id": sensor_id, "kind": kind, "grid": GRID, "owner": owner})


def raised(
    at: datetime,
    *,
    category: str = ENTRAPMENT,
    severity: Severity = Severity.RED,
    sensor_id: str = "EL-1",
    transition: AlarmTransition = AlarmTransition.RAISED,
    maintenance: bool = False,
) -> AlarmEvent:
    """An alarm of the sensor's `fault` rule."""
    return AlarmEvent(
        sensor_id=sensor_id,
        rule_id="fault",
        transition=transition,
        severity=severity,
        category=category,
        title=f"{category} at {sensor_id}",
        at=at,
        values={"fault": "entrapment"},
        maintenance=maintenance,
    )


async def apply(
    sessions: async_sessionmaker[AsyncSession],
    event: AlarmEvent,
    device: Sensor,
    *,
    policy: CasePolicy = ROUTED,
    test: bool = False,
) -> CaseChange:
    """Apply one alarm in its own transaction."""
    async with sessions() as session, session.begin():
        return await apply_alarm(
            session=session, alarm=event, sensor=device, test=test, policy=policy
        )


async def act(
    sessions: async_sessionmaker[AsyncSession],
    case_id: str,
    action: Action,
    at: datetime,
    *,
    policy: CasePolicy | None = None,
    **fields: object,
) -> Case:
    """Take `action` at `at` on the case's current version, as an admin."""
    async with sessions() as session, session.begin():
        case = await get_case(session=session, case_id=case_id)
        assert case is not None
        body = {"action": action.value} | VALID[action] | fields
        return await transitions.transition(
            session=session,
            case_id=case_id,
            versions=frozenset({case.version}),
            request=TransitionRequest.model_validate(body),
            actor=ADMIN,
            at=at,
            policy=policy,
        )
