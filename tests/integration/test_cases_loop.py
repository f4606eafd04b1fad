"""The case loop end to end on SQLite and PostgreSQL: manual reports, sensor-verified closure,
rework, postponement, reopening, and the conditional write under a concurrent writer."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from gridwatch.api.roles import Role
from gridwatch.cases import transitions
from gridwatch.cases.errors import VersionMismatchError
from gridwatch.cases.lifecycle import Action
from gridwatch.cases.models import CaseStatus
from gridwatch.cases.requests import TransitionRequest
from gridwatch.cases.service import apply_alarm, get_case
from gridwatch.cli import case_commands  # noqa: F401 - registers the commands on app
from gridwatch.cli.app import app
from gridwatch.domain import AlarmTransition, Severity
from gridwatch.gateway.db import create_engine, migrate, session_factory
from tests.cases.support import (
    ADMIN,
    LATER,
    PATHS,
    case_in,
    drive,
    outbox,
    request,
    snapshot,
    step,
)
from tests.integration.apiclient import running_api
from tests.integration.factories import alarm, rain_sensor

HANDLING = PATHS[CaseStatus.HANDLED]


@pytest.fixture
async def api(sessions):
    async with running_api(sessions) as api:
        yield api


async def _act(api, case_id, role, action, **changes):
    case = await api.client.get(f"/api/v1/cases/{case_id}", headers=api.as_role(role))
    return await api.client.post(
        f"/api/v1/cases/{case_id}/transitions",
        json=request(action, **changes),
        headers=api.as_role(role) | {"If-Match": case.headers["ETag"]},
    )


async def _sensor_case(sessions, *transitions_):
    case_id = ""
    for n, transition in enumerate(transitions_):
        async with sessions() as session, session.begin():
            event = alarm(transition, Severity.ORANGE, seconds=n)
            change = await apply_alarm(session=session, alarm=event, sensor=rain_sensor())
            case_id = change.case_id or case_id
    return case_id


async def test_a_manual_report_goes_round_the_loop(api, sessions):
    officer, dispatcher = api.as_role(Role.OFFICER), api.as_role(Role.DISPATCHER)
    report = {
        "category": "event:0102", "title": "Garbage piled at the gate", "severity": "yellow",
        "grid": "110101001001001", "description": "three bags since Monday",
        "location": {"lat": 39.93, "lon": 116.42, "address": "Dongsi 4th alley"},
        "evidence": ["https://files.example/garbage.jpg"],
    }  # fmt: skip
    created = await api.client.post("/api/v1/cases", json=report, headers=officer)
    assert created.status_code == 201, created.text
    case = created.json()
    assert created.headers["Location"] == f"/api/v1/cases/{case['id']}"
    assert created.headers["ETag"] == '"1"'
    assert (case["status"], case["kind"], case["sensor_id"], case["severity"]) == (
        "reported", "manual", None, "yellow",
    )  # fmt: skip
    assert case["evidence"] == {"links": ["https://files.example/garbage.jpg"]}
    assert case["location"]["address"] == "Dongsi 4th alley"

    steps = [
        (Role.OFFICER, Action.DISPATCH, "dispatched"),
        (Role.DISPATCHER, Action.ACCEPT, "accepted"),
        (Role.DISPATCHER, Action.FEEDBACK, "handled"),
        (Role.OFFICER, Action.VERIFY, "verified"),
        (Role.OFFICER, Action.CLOSE, "closed"),
        (Role.OFFICER, Action.EVALUATE, "evaluated"),
    ]
    statuses = []
    for role, action, _ in steps:
        response = await _act(api, case["id"], role, action)
        assert response.status_code == 200, response.text
        statuses.append(response.json()["status"])
    assert statuses == [status for _, _, status in steps]

    final = (await api.client.get(f"/api/v1/cases/{case['id']}", headers=dispatcher)).json()
    assert (final["unit"], final["score"], final["version"]) == ("water-bureau", 4, 7)
    assert final["closed_at"] is not None
    feedback = final["history"][3]
    assert (feedback["note"], feedback["data"]["evidence"]) == (
        "pumped out", ["https://files.example/after.jpg"],
    )  # fmt: skip
    types = [event.type for event in await outbox(sessions, case["id"])]
    assert types == [f"gridwatch.case.{t}" for t in (
        "opened", "dispatched", "accepted", "handled", "verified", "closed", "evaluated",
    )]  # fmt: skip


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.OFFICER, 201), (Role.ADMIN, 201), (Role.DISPATCHER, 403), (Role.VIEWER, 403)],
)
async def test_who_may_report_a_case(api, role, status):
    report = {"category": "event:0102", "title": "Garbage", "grid": "110101001001001"}
    response = await api.client.post("/api/v1/cases", json=report, headers=api.as_role(role))
    assert response.status_code == status


async def test_a_report_needs_a_place(api):
    report = {"category": "event:0102", "title": "Garbage"}
    response = await api.client.post(
        "/api/v1/cases", json=report, headers=api.as_role(Role.OFFICER)
    )
    assert response.status_code == 422


async def test_a_sensor_case_is_not_verified_while_its_alarm_is_active(api, sessions):
    case_id = await _sensor_case(sessions, AlarmTransition.RAISED)
    await drive(sessions, case_id, HANDLING)

    refused = await _act(api, case_id, Role.OFFICER, Action.VERIFY)
    assert refused.status_code == 409
    assert "still active" in refused.json()["reason"]
    assert refused.json()["allowed"] == ["verify", "reject"]
    no_reason = await _act(api, case_id, Role.OFFICER, Action.VERIFY, override=True)
    assert no_reason.status_code == 422
    assert (await snapshot(sessions, case_id)).status == "handled"

    verified = await _act(
        api, case_id, Role.OFFICER, Action.VERIFY, override=True, note="gauge is blocked, seen dry"
    )
    assert verified.status_code == 200, verified.text
    entry = verified.json()["history"][-1]
    assert entry["note"] == "gauge is blocked, seen dry"
    assert entry["data"]["override"] is True
    assert entry["data"]["alarm_active"] is True
    assert entry["data"]["cleared"] is None
    evidence = entry["data"]["alarm_evidence"]
    assert (evidence["values"], evidence["rule_id"]) == ({"rain_mm": 4.0}, "burst")


async def test_a_sensor_case_is_verified_by_its_alarm_clearing(api, sessions):
    case_id = await _sensor_case(sessions, AlarmTransition.RAISED)
    await drive(sessions, case_id, HANDLING)
    await _sensor_case(sessions, AlarmTransition.CLEARED)

    verified = await _act(api, case_id, Role.OFFICER, Action.VERIFY)

    assert verified.status_code == 200, verified.text
    data = verified.json()["history"][-1]["data"]
    assert (data["override"], data["alarm_active"]) == (False, False)
    assert data["cleared"] == {
        "at": "2026-07-20T08:00:00+00:00", "severity": "orange", "values": {"rain_mm": 4.0},
        "rule_id": "burst",
    }  # fmt: skip


async def test_a_rejected_case_goes_back_for_rework(api, sessions):
    case_id = await case_in(sessions, CaseStatus.HANDLED)
    rejected = await _act(api, case_id, Role.OFFICER, Action.REJECT)
    assert rejected.json()["status"] == "dispatched"
    assert rejected.json()["rework_count"] == 1
    await drive(sessions, case_id, [Action.ACCEPT, Action.FEEDBACK, Action.REJECT])
    case = await snapshot(sessions, case_id)
    assert (case.status, case.rework_count) == ("dispatched", 2)
    assert [h.data["rework"] for h in case.history if h.action == "reject"] == [1, 2]
    types = [event.type for event in await outbox(sessions, case_id)]
    assert types.count("gridwatch.case.reworked") == 2


async def test_an_approved_postponement_moves_the_deadline(api, sessions):
    case_id = await case_in(sessions, CaseStatus.POSTPONED)
    pending = await snapshot(sessions, case_id)
    # The handling deadline from dispatch (Monday 17:01 in Beijing): 16 working hours, blue.
    handle_due = datetime(2026, 7, 23, 1, 1, tzinfo=UTC)
    assert (pending.status, pending.due_at, pending.requested_due_at) == (
        "postponed", handle_due, LATER,
    )  # fmt: skip

    approved = await _act(api, case_id, Role.OFFICER, Action.APPROVE_POSTPONE)

    case = approved.json()
    assert (case["status"], case["due_at"], case["requested_due_at"]) == (
        "accepted", "2100-01-01T00:00:00Z", None,
    )  # fmt: skip
    assert case["history"][-1]["data"]["approved"] is True
    assert (await outbox(sessions, case_id))[-1].type == "gridwatch.case.updated"


async def test_a_denied_postponement_keeps_the_deadline_and_says_why(api, sessions):
    deadline = datetime(2099, 1, 1, tzinfo=UTC)
    case_id = await case_in(sessions, CaseStatus.REPORTED)
    await api.client.post(
        f"/api/v1/cases/{case_id}/transitions",
        json=request(Action.DISPATCH, due_at=deadline.isoformat()),
        headers=api.as_role(Role.OFFICER) | {"If-Match": '"1"'},
    )
    await drive(sessions, case_id, [Action.ACCEPT, Action.POSTPONE])

    silent = await _act(api, case_id, Role.OFFICER, Action.APPROVE_POSTPONE, approved=False)
    assert silent.status_code == 422
    denied = await _act(
        api, case_id, Role.OFFICER, Action.APPROVE_POSTPONE, approved=False, note="no"
    )

    case = denied.json()
    assert (case["status"], case["due_at"], case["requested_due_at"]) == (
        "accepted", "2099-01-01T00:00:00Z", None,
    )  # fmt: skip
    assert case["history"][-1]["data"] == {
        "approved": False, "due_at": "2099-01-01T00:00:00+00:00", "actor_name": "test officer",
    }  # fmt: skip


async def test_a_postponement_must_push_the_deadline_later(api, sessions):
    case_id = await case_in(sessions, CaseStatus.ACCEPTED)
    await drive(sessions, case_id, [Action.POSTPONE, Action.APPROVE_POSTPONE])
    sooner = await _act(
        api, case_id, Role.DISPATCHER, Action.POSTPONE, due_at="2099-06-01T00:00:00Z"
    )
    assert sooner.status_code == 422
    assert sooner.json()["errors"][0]["field"] == "due_at"


async def test_reopening_a_closed_sensor_case_takes_back_its_open_key(api, sessions):
    case_id = await _sensor_case(sessions, AlarmTransition.RAISED, AlarmTransition.CLEARED)
    await drive(sessions, case_id, PATHS[CaseStatus.CLOSED])

    reopened = await _act(api, case_id, Role.OFFICER, Action.REOPEN)

    assert reopened.status_code == 200, reopened.text
    assert (reopened.json()["status"], reopened.json()["reopen_count"]) == ("reported", 1)
    repeat = await _sensor_case(sessions, AlarmTransition.RAISED)
    assert repeat == case_id
    assert (await snapshot(sessions, case_id)).occurrences == 2


async def test_a_case_is_not_reopened_while_a_newer_one_holds_its_alarm(api, sessions):
    first = await _sensor_case(sessions, AlarmTransition.RAISED)
    await drive(sessions, first, [Action.CANCEL])
    second = await _sensor_case(sessions, AlarmTransition.REPEATED)
    assert second != first

    refused = await _act(api, first, Role.OFFICER, Action.REOPEN)

    assert refused.status_code == 409
    assert second in refused.json()["reason"]
    assert (await snapshot(sessions, first)).status == "cancelled"


@pytest.mark.parametrize(("role", "status"), [(Role.OFFICER, 404), (Role.ADMIN, 200)])
async def test_test_cases_are_out_of_sight_of_the_loop_roles(api, sessions, role, status):
    async with sessions() as session, session.begin():
        change = await apply_alarm(
            session=session, alarm=alarm(AlarmTransition.RAISED), sensor=rain_sensor(), test=True
        )
    response = await api.client.post(
        f"/api/v1/cases/{change.case_id}/transitions",
        json=request(Action.CANCEL),
        headers=api.as_role(role) | {"If-Match": '"1"'},
    )
    assert response.status_code == status


async def test_the_write_is_conditional_on_the_version_read(sessions):
    # Both writers read version 1; the second's UPDATE waits on the first's lock and then
    # matches no row: it must fail, not overwrite.
    case_id = await case_in(sessions, CaseStatus.REPORTED)

    async def take(session, action):
        return await transitions.transition(
            session=session,
            case_id=case_id,
            versions=frozenset({1}),
            request=TransitionRequest.model_validate(request(action)),
            actor=ADMIN,
            at=step(5),
        )

    async with sessions() as first:
        await first.begin()
        await take(first, Action.DISPATCH)
        async with sessions() as second, second.begin():
            loser = asyncio.create_task(take(second, Action.CANCEL))
            await asyncio.sleep(0.5)
            assert not loser.done()
            await first.commit()
            with pytest.raises(VersionMismatchError) as stale:
                await loser
    assert stale.value.current is None
    case = await snapshot(sessions, case_id)
    assert (case.status, case.version, [e.sequence for e in await outbox(sessions, case_id)]) == (
        "dispatched", 2, [1, 2],
    )  # fmt: skip


def test_the_cli_lists_shows_and_acts(database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("GRIDWATCH_DATABASE_URL", database_url)
    # The CLI takes the deadlines the service is configured with, not the shipped ones.
    deadlines = tmp_path / "deadlines.yaml"
    deadlines.write_text("rules:\n  - {category: '*', dispatch: 7h, handle: 7h, verify: 7h}\n")
    monkeypatch.setenv("GRIDWATCH_DEADLINES_FILE", str(deadlines))
    monkeypatch.setenv("USER", "wang")
    monkeypatch.setenv("COLUMNS", "200")

    async def seed():
        engine = create_engine(database_url)
        try:
            await migrate(engine)
            return await case_in(session_factory(engine), CaseStatus.REPORTED)
        finally:
            await engine.dispose()

    case_id = asyncio.run(seed())
    runner = CliRunner()

    listed = runner.invoke(app, ["cases", "list", "--status", "reported"])
    assert listed.exit_code == 0, listed.output
    assert case_id in listed.output
    refused = runner.invoke(app, ["cases", "act", case_id, "close"])
    assert refused.exit_code == 1
    assert "allowed: dispatch, cancel" in refused.output
    missing = runner.invoke(app, ["cases", "act", case_id, "cancel"])
    assert missing.exit_code == 2
    acted = runner.invoke(app, ["cases", "act", case_id, "dispatch", "--unit", "water-bureau"])
    assert acted.exit_code == 0, acted.output
    assert "dispatched (version 2)" in acted.output
    shown = runner.invoke(app, ["cases", "show", case_id])
    assert '"actor": "cli:wang"' in shown.output

    async def read():
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                return await get_case(session=session, case_id=case_id)
        finally:
            await engine.dispose()

    case = asyncio.run(read())
    assert (case.status, case.unit, case.history[-1].actor) == ("dispatched", "water-bureau",
                                                                "cli:wang")  # fmt: skip
    assert case.due_at - case.history[-1].at == timedelta(hours=7)
    deadlines.write_text("rules:\n  - {category: '*', dispatch: soon}\n")
    broken = runner.invoke(app, ["cases", "act", case_id, "accept"])
    assert broken.exit_code == 2
    assert "deadlines.yaml" in broken.output
