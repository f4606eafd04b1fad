"""Pytest fixtures for real servers on loopback ports; tests/conftest.py imports them with *."""

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import pytest_asyncio

from tests.servers.influxdb import (
    InfluxDatabase,
    InfluxDBNotFoundError,
    InfluxDBServer,
    unique_database_name,
)
from tests.servers.mosquitto import MosquittoNotFoundError, MosquittoServer
from tests.servers.postgres import (
    PostgresUnavailableError,
    ScratchDatabase,
    create_database,
    drop_database,
)
from tests.servers.webhook_receiver import WebhookReceiver, new_secret

__all__ = [
    "fresh_influxdb",
    "fresh_mosquitto",
    "influx_database",
    "influxdb",
    "mosquitto",
    "postgres_database",
    "postgres_url",
    "webhook_receiver",
    "webhook_secret",
]

TEST_DB_ENV = "GRIDWATCH_TEST_DB"


def _unavailable(message: str, *, required: bool = False) -> NoReturn:
    """Skip a test whose server is missing locally; fail it where the server must exist."""
    # In CI (or when the run asked for PostgreSQL) a skip would hide a missing install step
    # behind a green run.
    if required or os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _start_mosquitto(workdir: Path) -> MosquittoServer:
    """Start a broker in `workdir`, or skip/fail the test when Mosquitto is not installed."""
    try:
        server = MosquittoServer(workdir=workdir)
    except MosquittoNotFoundError as err:
        _unavailable(str(err))
    server.start()
    return server


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """One broker for the whole session; use unique client ids and topics, do not restart it."""
    server = _start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    """A broker of this test's own, free to restart; its files stay in tmp_path for debugging."""
    server = _start_mosquitto(tmp_path / "mosquitto")
    try:
        yield server
    finally:
        server.stop()


def _start_influxdb(workdir: Path) -> InfluxDBServer:
    """Start influxd in `workdir`, or skip/fail the test when InfluxDB is not installed."""
    try:
        server = InfluxDBServer(workdir=workdir)
    except InfluxDBNotFoundError as err:
        _unavailable(str(err))
    server.start()
    return server


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDBServer]:
    """One InfluxDB for the whole session; use a database of your own, do not stop it."""
    server = _start_influxdb(tmp_path_factory.mktemp("influxdb"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_influxdb(tmp_path: Path) -> Iterator[InfluxDBServer]:
    """An InfluxDB of this test's own, free to stop, kill and restart; files stay in tmp_path."""
    server = _start_influxdb(tmp_path / "influxdb")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influx_database(influxdb: InfluxDBServer) -> Iterator[InfluxDatabase]:
    """A fresh, uniquely named database on the session InfluxDB, dropped after the test."""
    database = InfluxDatabase(url=influxdb.url, name=unique_database_name())
    influxdb.create_database(database.name)
    try:
        yield database
    finally:
        influxdb.drop_database(database.name)


async def _create_database() -> ScratchDatabase:
    """Create a scratch database, or skip/fail the test when PostgreSQL is not reachable."""
    try:
        return await create_database()
    except PostgresUnavailableError as err:
        failure = str(err)
    # Outside the except block, so the report shows the message, not a chained traceback.
    _unavailable(failure, required=os.environ.get(TEST_DB_ENV) == "postgresql")


@pytest_asyncio.fixture
async def postgres_database() -> AsyncIterator[ScratchDatabase]:
    """A fresh empty database (name, asyncpg DSN, SQLAlchemy URL), dropped after the test."""
    database = await _create_database()
    try:
        yield database
    finally:
        await drop_database(database)


@pytest.fixture
def postgres_url(postgres_database: ScratchDatabase) -> str:
    """SQLAlchemy async URL (postgresql+asyncpg://…) of a fresh database dropped after the test."""
    return postgres_database.url


@pytest.fixture
def webhook_secret() -> str:
    """A fresh Standard Webhooks secret (whsec_…)."""
    return new_secret()


@pytest.fixture
def webhook_receiver(webhook_secret: str) -> Iterator[WebhookReceiver]:
    """An HTTP receiver on 127.0.0.1 verifying deliveries signed with webhook_secret."""
    with WebhookReceiver(secret=webhook_secret) as receiver:
        yield receiver
