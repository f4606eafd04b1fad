"""The stored routing table: kept over restarts, shared by processes; the database failing."""

import asyncio
import contextlib
import logging
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import delete, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from gridwatch.api import create_app
from gridwatch.api.keys import digest
from gridwatch.api.roles import Role
from gridwatch.cases.policy import load_case_policy
from gridwatch.cases.routing import DEMO_ROUTING_PATH, RoutingError, RoutingSource
from gridwatch.cases.routing_store import RoutingRow
from gridwatch.gateway.db import create_engine, session_factory
from gridwatch.gateway.settings import SettingsError, load_settings
from gridwatch.service.routing_sync import RoutingSync
from gridwatch.service.runtime import Service
from tests.integration.apiclient import running_api
from tests.integration.test_routing_api import EMERGENCY, NEW_TABLE, NEW_UNIT, _put, _unit_for
from tests.servers.ports import free_port

BOOTSTRAP_KEY = "routing-test-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}


@pytest.fixture
async def other_sessions(database_url):
    """Sessions of another process on the same database: an engine of their own."""
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def _demo_policy():
    return load_case_policy(routing_file=DEMO_ROUTING_PATH)


async def test_a_stored_table_is_in_force_after_a_restart(sessions, other_sessions):
    async with running_api(sessions, case_policy=_demo_policy()) as first:
        assert (await _put(first, NEW_TABLE)).status_code == 200

    # A new process reads the routing file, then the database, as the service does at start.
    policy = _demo_policy()
    assert policy.routing.state.source is RoutingSource.FILE
    await RoutingSync(sessions=other_sessions, routing=policy.routing).refresh()
    async with running_api(other_sessions, case_policy=policy) as restarted:
        assert await _unit_for(restarted) == NEW_UNIT
        shown = await restarted.client.get(
            "/api/v1/routing", headers=restarted.as_role(Role.VIEWER)
        )
        assert (shown.json()["source"], shown.json()["version"]) == ("api", 1)


async def test_another_process_takes_a_change_within_a_poll(sessions, other_sessions):
    async with (
        running_api(sessions, case_policy=_demo_policy()) as here,
        running_api(other_sessions, case_policy=_demo_policy()) as there,
        asyncio.TaskGroup() as group,
    ):
        routing = there.context.case_policy.routing
        sync = RoutingSync(sessions=other_sessions, routing=routing, poll_s=0.05)
        polling = group.create_task(sync.run())
        assert await _unit_for(there) == EMERGENCY

        await _put(here, NEW_TABLE)
        await _until(lambda: routing.state.version == 1)
        assert await _unit_for(there) == NEW_UNIT

        await here.client.delete(
            "/api/v1/routing", headers=here.as_role(Role.ADMIN) | {"If-Match": '"1"'}
        )
        await _until(lambda: routing.state.version == 2)
        assert (routing.state.source, await _unit_for(there)) == (RoutingSource.FILE, EMERGENCY)
        polling.cancel()


async def test_a_get_shows_a_change_made_elsewhere_before_the_poll(sessions, other_sessions):
    async with (
        running_api(sessions, case_policy=_demo_policy()) as here,
        running_api(other_sessions, case_policy=_demo_policy()) as there,
    ):
        await _put(here, NEW_TABLE)

        shown = await there.client.get("/api/v1/routing", headers=there.as_role(Role.VIEWER))

        # The ETag a client writes back with is the stored one, not a stale copy's.
        assert (shown.headers["ETag"], shown.json()["source"]) == ('"1"', "api")
        assert await _unit_for(there) == NEW_UNIT


async def test_a_database_outage_during_a_change_is_a_503_and_changes_nothing(
    sessions, database_url, tmp_path
):
    if database_url.startswith("sqlite"):
        dead_url = f"sqlite+aiosqlite:///{tmp_path / 'no-such-folder' / 'gridwatch.db'}"
    else:
        dead_url = make_url(database_url).set(port=free_port()).render_as_string(False)
    dead = create_async_engine(dead_url)
    try:
        async with running_api(sessions, case_policy=_demo_policy()) as api:
            # The bootstrap key needs no database, so the request gets as far as the write.
            context = replace(
                api.context, sessions=session_factory(dead), admin_key_digest=digest(BOOTSTRAP_KEY)
            )
            transport = httpx.ASGITransport(app=create_app(context))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                put = await client.put(
                    "/api/v1/routing", json=NEW_TABLE, headers=ADMIN | {"If-Match": '"0"'}
                )
                shown = await client.get("/api/v1/routing", headers=ADMIN)
            unit = await _unit_for(api)

        assert put.status_code == 503
        assert put.headers["content-type"] == "application/problem+json"
        assert put.headers["Retry-After"] == "5"
        assert "database is unavailable" in put.json()["detail"]
        assert dead_url.split("@")[-1] not in put.text  # the driver's message stays in the log
        # The table in force stays, and a GET still shows it.
        assert (shown.status_code, shown.json()["source"]) == (200, "file")
        assert unit == EMERGENCY
    finally:
        await dead.dispose()


async def test_a_missing_row_is_written_again(sessions):
    # The migration creates the row; a database restored without it must still take a table.
    async with sessions() as session, session.begin():
        await session.execute(delete(RoutingRow))
    async with running_api(sessions, case_policy=_demo_policy()) as api:
        dropped = await api.client.delete(
            "/api/v1/routing", headers=api.as_role(Role.ADMIN) | {"If-Match": '"0"'}
        )
        assert (dropped.status_code, dropped.json()["version"]) == (200, 0)
        assert (await _put(api, NEW_TABLE, if_match='"1"')).status_code == 412

        put = await _put(api, NEW_TABLE, if_match='"0"')

        assert (put.status_code, put.json()["version"]) == (200, 1)
        assert await _unit_for(api) == NEW_UNIT


async def _store_unusable_table(sessions, version):
    # What a gridwatch with other checks could have stored: a grid code ours refuses.
    document = {"routes": [{"category": "*", "grid": "990101", "unit": "x"}]}
    async with sessions() as session, session.begin():
        await session.execute(update(RoutingRow).values(version=version, document=document))


async def test_a_stored_table_that_no_longer_validates_keeps_the_one_in_force(sessions, caplog):
    policy = _demo_policy()
    sync = RoutingSync(sessions=sessions, routing=policy.routing, poll_s=0.02)
    await _store_unusable_table(sessions, version=3)

    with pytest.raises(RoutingError, match=r"stored in the database \(version 3\): entry #1"):
        await sync.refresh()
    with (
        caplog.at_level(logging.ERROR, logger="gridwatch.routing"),
        contextlib.suppress(TimeoutError),
    ):
        async with asyncio.timeout(0.2):  # about ten polls
            await sync.run()

    assert (policy.routing.state.source, policy.routing.state.version) == (RoutingSource.FILE, 0)
    assert len([r for r in caplog.records if "refused" in r.message]) == 1  # said once
    async with running_api(sessions, case_policy=policy) as api:
        shown = await api.client.get("/api/v1/routing", headers=api.as_role(Role.VIEWER))
        assert (shown.status_code, shown.json()["source"]) == (200, "file")
        # A valid table at the stored version replaces it.
        assert (await _put(api, NEW_TABLE, if_match='"3"')).status_code == 200
        assert await _unit_for(api) == NEW_UNIT


async def test_the_service_refuses_to_start_on_a_stored_table_it_cannot_use(
    sessions, database_url, tmp_path
):
    await _store_unusable_table(sessions, version=2)
    settings = load_settings(data_dir=tmp_path / "var", database_url=database_url)

    with pytest.raises(SettingsError) as refused:
        await Service(settings).run(asyncio.Event())

    assert "stored in the database (version 2)" in str(refused.value)
    assert "gridwatch routing clear" in str(refused.value)


async def _until(condition):
    async with asyncio.timeout(5.0):
        # The holder has no change event to wait on: the poll is what is under test.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
