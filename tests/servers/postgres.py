"""A fresh, empty PostgreSQL database per test, created on and dropped from a running server."""

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ADMIN_URL_ENV = "GRIDWATCH_TEST_PG_ADMIN_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_PREFIX = "gw_test_"
_CONNECT_TIMEOUT_S = 5.0


class PostgresUnavailableError(RuntimeError):
    """The admin server cannot be reached or refuses to create a database."""

    def __init__(self, admin_url: str, cause: BaseException) -> None:
        self.admin_url = admin_url
        super().__init__(
            f"PostgreSQL test server not usable at {_redacted(admin_url)} "
            f"({type(cause).__name__}: {cause}). Start it (the test command does) or point "
            f"{ADMIN_URL_ENV} at a server with trust auth on 127.0.0.1."
        )


def _redacted(url: str) -> str:
    """Return `url` with its password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


@dataclass(frozen=True, slots=True)
class ScratchDatabase:
    """A throwaway database: its name, an asyncpg DSN and a SQLAlchemy async URL."""

    name: str
    dsn: str
    url: str


def admin_url() -> str:
    """Return the admin connection URL from the environment, or the local default."""
    return os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL


def scratch_urls(admin: str, name: str) -> ScratchDatabase:
    """Return the URLs of database `name` on the server of the admin URL `admin`."""
    parts = urlsplit(admin)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise ValueError(f"{ADMIN_URL_ENV} must be a postgresql:// URL, got {admin!r}")
    dsn = urlunsplit(("postgresql", parts.netloc, f"/{name}", parts.query, ""))
    url = urlunsplit(("postgresql+asyncpg", parts.netloc, f"/{name}", parts.query, ""))
    return ScratchDatabase(name=name, dsn=dsn, url=url)


async def _admin_connection(admin: str) -> asyncpg.Connection:
    """Connect to the admin database, translating every failure into PostgresUnavailableError."""
    try:
        return await asyncpg.connect(admin, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        raise PostgresUnavailableError(admin, err) from err


async def database_exists(name: str, *, admin: str | None = None) -> bool:
    """Tell whether a database called `name` exists on the admin server."""
    admin = admin or admin_url()
    conn = await _admin_connection(admin)
    try:
        found = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await conn.close()
    return found is not None


async def create_database(admin: str | None = None) -> ScratchDatabase:
    """Create an empty database `gw_test_<random>` on the admin server and return its URLs."""
    admin = admin or admin_url()
    # Lower-case hex keeps the name a valid unquoted identifier; quoting below is belt and braces.
    database = scratch_urls(admin, f"{DATABASE_PREFIX}{secrets.token_hex(6)}")
    conn = await _admin_connection(admin)
    try:
        # CREATE/DROP DATABASE cannot take bind parameters; the name is ours, not user input.
        await conn.execute(f'CREATE DATABASE "{database.name}"')
    except asyncpg.PostgresError as err:
        raise PostgresUnavailableError(admin, err) from err
    finally:
        await conn.close()
    return database


async def drop_database(database: ScratchDatabase, admin: str | None = None) -> None:
    """Drop `database`, ending any connection a test left open to it."""
    conn = await _admin_connection(admin or admin_url())
    try:
        # FORCE (PostgreSQL 13+) ends connections a test left open, e.g. an undisposed pool.
        await conn.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_database(admin: str | None = None) -> AsyncIterator[ScratchDatabase]:
    """Create an empty database, yield its URLs, and drop it afterwards."""
    database = await create_database(admin)
    try:
        yield database
    finally:
        await drop_database(database, admin)
