"""What the API needs from the running service, handed over explicitly (no globals)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.gateway.rejects import RejectLog
from gridwatch.gateway.telemetry import TelemetryStore


@dataclass(frozen=True)
class ApiContext:
    """The service's parts the API reads; `readiness` reports each dependency's state."""

    sessions: async_sessionmaker[AsyncSession]
    registry: SensorRegistry
    store: TelemetryStore
    rejects: RejectLog
    metrics: Metrics
    admin_key_hash: bytes | None
    readiness: Callable[[], Awaitable[dict[str, bool]]]
