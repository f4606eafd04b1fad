"""The database away: every route answers 503 problem+json with Retry-After, never a 500."""

from dataclasses import replace

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from gridwatch.api import create_app
from gridwatch.api.keys import digest
from gridwatch.api.roles import Role
from gridwatch.gateway.db import session_factory
from tests.integration.apiclient import running_api
from tests.servers.ports import free_port

BOOTSTRAP_KEY = "database-down-test-admin-key-0123456789"
ROUTES = [
    ("GET", "/api/v1/sensors"),
    ("GET", "/api/v1/cases"),
    ("GET", "/api/v1/grid"),
    ("GET", "/api/v1/kpi?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z"),
    ("POST", "/api/v1/cases"),
]
REPORT = {
    "category": "event:0401", "severity": "yellow", "title": "billboard loose",
    "grid": "110101001001001",
}  # fmt: skip


@pytest.fixture
async def dead_sessions(database_url, tmp_path):
    """Sessions on a database that is not there: a folder that does not exist, a closed port."""
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'no-such-folder' / 'gridwatch.db'}"
    else:
        url = make_url(database_url).set(port=free_port()).render_as_string(False)
    engine = create_async_engine(url)
    yield url, session_factory(engine)
    await engine.dispose()


@pytest.mark.parametrize("key", ["stored", "bootstrap"])
async def test_every_route_is_a_503_while_the_database_is_away(sessions, dead_sessions, key):
    url, dead = dead_sessions
    async with running_api(sessions) as api:
        # A stored key is checked against the database (the check fails first); the bootstrap
        # key is not, so the request gets as far as the route's own query.
        context = replace(api.context, sessions=dead, admin_key_digest=digest(BOOTSTRAP_KEY))
        headers = (
            api.as_role(Role.ADMIN)
            if key == "stored"
            else {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
        )
        transport = httpx.ASGITransport(app=create_app(context), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            answers = [
                await client.request(
                    method, path, headers=headers, json=REPORT if method == "POST" else None
                )
                for method, path in ROUTES
            ]
    for (method, path), answer in zip(ROUTES, answers, strict=True):
        where = f"{method} {path}"
        assert answer.status_code == 503, (where, answer.text)
        assert answer.headers["content-type"] == "application/problem+json", where
        assert answer.headers["Retry-After"] == "5", where
        assert answer.json()["detail"] == "the database is unavailable; try again", where
        # The driver's message names hosts, ports and files: the log has it, the caller not.
        assert url.split("@")[-1].split("/")[0] not in answer.text, where
