"""Shared fixtures: real servers (tests/servers) and a database on each supported backend."""

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gridwatch.gateway.db import create_engine, migrate, session_factory
from tests.servers.fixtures import *  # noqa: F403

BACKENDS = ("sqlite", "postgresql")

# Timing is for benchmarks: on a loaded 2-core machine Hypothesis's deadline and slow-generation
# checks fail tests whose logic is fine.
settings.register_profile("gridwatch", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gridwatch")


def _backends() -> list[str]:
    # GRIDWATCH_TEST_DB narrows the run to one backend; by default every DB test runs on both.
    chosen = os.environ.get("GRIDWATCH_TEST_DB")
    return [chosen] if chosen in BACKENDS else list(BACKENDS)


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a scratch PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'gridwatch.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest_asyncio.fixture
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database."""
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on the migrated database."""
    return session_factory(db_engine)
