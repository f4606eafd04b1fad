"""An in-process API over a real database, with one key per role."""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.api import ApiContext, create_app
from gridwatch.api.context import DeviceProfileView
from gridwatch.api.keys import create_key
from gridwatch.api.roles import Role
from gridwatch.cases.policy import CasePolicy, shipped_policy
from gridwatch.dispatch.feed import DispatchFeed
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.gateway.rejects import RejectLog
from gridwatch.gateway.telemetry import LatestReadings, TelemetryReader
from gridwatch.rules import Rule
from gridwatch.service.registry_sync import RegistrySync
from tests.integration.factories import alarm_service
from tests.telemetry.support import NO_TELEMETRY


@dataclass
class Api:
    """The client, the context behind it, and a bearer header per role."""

    client: httpx.AsyncClient
    context: ApiContext
    headers: dict[Role, dict[str, str]]

    def as_role(self, role: Role) -> dict[str, str]:
        return self.headers[role]


@asynccontextmanager
async def running_api(
    sessions: async_sessionmaker[AsyncSession],
    *,
    rules: tuple[Rule, ...] = (),
    profiles: Mapping[str, DeviceProfileView] | None = None,
    strict_location: bool = False,
    telemetry: TelemetryReader = NO_TELEMETRY,
    case_policy: CasePolicy | None = None,
    dispatch_feed: DispatchFeed | None = None,
) -> AsyncIterator[Api]:
    """An app on `sessions` whose registry index follows every committed change."""
    registry = SensorRegistry()
    sync = RegistrySync(sessions=sessions, registry=registry)

    async def ready() -> dict[str, bool]:
        return {"database": True, "mqtt": True}

    context = ApiContext(
        sessions=sessions,
        registry=registry,
        latest=LatestReadings(),
        telemetry=telemetry,
        rejects=RejectLog(None),
        metrics=Metrics(),
        admin_key_digest=None,
        readiness=ready,
        profiles=profiles or {},
        alarms=alarm_service(rules, registry),
        case_policy=case_policy or shipped_policy(),
        sensors_changed=sync.reload,
        strict_location=strict_location,
        dispatch_feed=dispatch_feed,
    )
    headers = {}
    async with sessions() as session, session.begin():
        for role in Role:
            _, key = await create_key(session=session, role=role, name=f"test {role}")
            headers[role] = {"Authorization": f"Bearer {key}"}
    transport = httpx.ASGITransport(app=create_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://gridwatch") as client:
        yield Api(client=client, context=context, headers=headers)
