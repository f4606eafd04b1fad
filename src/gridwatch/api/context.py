"""What the API needs from the running service, handed over explicitly (no globals)."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.cases.policy import CasePolicy, shipped_policy
from gridwatch.dispatch.feed import DispatchFeed
from gridwatch.domain import Sensor
from gridwatch.gateway.alarms import AlarmService
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.gateway.rejects import RejectLog
from gridwatch.gateway.telemetry import LatestReadings, TelemetryReader


class DeviceProfileView(Protocol):
    """What the API needs of a device profile."""

    @property
    def kind(self) -> str:
        """The sensor kind the profile is for."""

    def public_dict(self) -> dict[str, Any]:
        """The profile as the API lists it."""


async def _nothing_changed() -> None:
    return None


def _no_wake() -> None:
    return None


class RulesReload(Protocol):
    """The outcome of reloading the rule files."""

    @property
    def loaded(self) -> bool:
        """False when the files were refused and the running rules stayed."""

    @property
    def rules(self) -> int:
        """How many rules are in force now."""

    @property
    def error(self) -> str | None:
        """Why the files were refused."""


@dataclass(frozen=True)
class DeviceProbe:
    """A polled device read once by hand: its raw answers, or why there were none."""

    registers: dict[str, list[int]]
    error: str | None


@dataclass(frozen=True)
class ApiContext:
    """The service's parts the API reads; `readiness` reports each dependency's state."""

    sessions: async_sessionmaker[AsyncSession]
    registry: SensorRegistry
    latest: LatestReadings
    telemetry: TelemetryReader
    rejects: RejectLog
    metrics: Metrics
    admin_key_digest: str | None
    readiness: Callable[[], Awaitable[dict[str, bool]]]
    # The rules in force and the commissioning dry run come from the one alarm service.
    alarms: AlarmService
    profiles: Mapping[str, DeviceProfileView] = field(default_factory=dict)
    # Called after a committed registry change, so the gateway's index updates at once.
    sensors_changed: Callable[[], Awaitable[None]] = _nothing_changed
    strict_location: bool = False
    reload_rules: Callable[[], Awaitable[RulesReload]] | None = None
    # Polls a device once through the pipeline (a Modbus sensor); None for one that publishes.
    probe_device: Callable[[Sensor], Awaitable[DeviceProbe | None]] | None = None
    # Deadlines and routing for the cases people report and move; the service's own.
    case_policy: CasePolicy = field(default_factory=shipped_policy)
    # The dispatch queue's long-poll wake-ups; None: the app makes its own.
    dispatch_feed: DispatchFeed | None = None
    # Called after a route commits case events, so the relay and the queue look at once.
    events_committed: Callable[[], None] = _no_wake
