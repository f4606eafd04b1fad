"""POST /api/v1/cases/{id}/receipts on SQLite and PostgreSQL: transitions, arrival, idempotence."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gridwatch.api.roles import ROLE_MATRIX, Permission, Role
from gridwatch.cases import transitions
from gridwatch.cases.lifecycle import Action
from gridwatch.cases.models import CaseStatus
from gridwatch.cases.receipts import CaseReceipt
from gridwatch.cases.requests import CaseReport
from gridwatch.cases.service import apply_alarm
from gridwatch.domain import AlarmTransition, Severity
from tests.cases.support import ADMIN, case_in, drive, outbox, snapshot, step
from tests.integration.apiclient import running_api
from tests.integration.factories import alarm, rain_sensor

EVIDENCE = ["https://files.example/rescue.jpg"]
# A red elevator case must be reached within 30 minutes of its dispatch (deadline-policy.yaml).
ENTRAPMENT = CaseReport(
    category="component:0601", title="Entrapment", grid="110101001001001", severity=Severity.RED
)


@pytest.fixture
async def api(sessions):
    async with running_api(sessions) as api:
        yield api


async def _post(api, case_id, body, *, role=Role.DISPATCHER):
    return await api.client.post(
        f"/api/v1/cases/{case_id}/receipts", json=body, headers=api.as_role(role)
    )


def _receipt(receipt_type, receipt_id="r-1", **fields):
    return {"receipt_id": receipt_id, "type": receipt_type} | fields


async def _entrapment_accepted(sessions):
    """A red elevator case reported at 09:00, dispatched at 09:01 (due on site 09:31), accepted."""
    async with sessions() as session, session.begin():
        case = await transitions.report_case(
            session=session, report=ENTRAPMENT, actor=ADMIN, at=step(0)
        )
    await drive(sessions, case.id, [Action.DISPATCH, Action.ACCEPT])
    return case.id


async def _stored_receipts(sessions):
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(CaseReceipt))


@pytest.mark.parametrize(
    ("state", "receipt", "after", "event"),
    [
        (CaseStatus.DISPATCHED, _receipt("accepted"), "accepted", "gridwatch.case.accepted"),
        (
            CaseStatus.ACCEPTED,
            _receipt("handled", note="freed, car restarted", evidence=EVIDENCE),
            "handled",
            "gridwatch.case.handled",
        ),
    ],
)
async def test_a_receipt_takes_its_transition_as_the_dispatcher(
    api, sessions, state, receipt, after, event
):
    case_id = await case_in(sessions, state)
    before = await snapshot(sessions, case_id)

    response = await _post(api, case_id, receipt)

    assert response.status_code == 201, response.text
    body = response.json()
    case = await snapshot(sessions, case_id)
    events = await outbox(sessions, case_id)
    assert (case.status, case.version) == (after, before.version + 1)
    assert (body["status"], body["version"], body["case_id"]) == (after, case.version, case_id)
    assert (body["event_id"], events[-1].type) == (events[-1].id, event)
    entry = case.history[-1]
    assert (entry.action, entry.to_status) == (body["action"], after)
    assert entry.actor.startswith("key_")
    assert entry.data["receipt_id"] == "r-1"
    assert entry.note == receipt.get("note", "")
    assert entry.data.get("evidence", []) == receipt.get("evidence", [])
    assert "Idempotent-Replayed" not in response.headers


@pytest.mark.parametrize(("minutes", "on_time"), [(20, True), (45, False)])
async def test_arrival_is_recorded_and_stops_the_on_site_clock(api, sessions, minutes, on_time):
    case_id = await _entrapment_accepted(sessions)
    before = await snapshot(sessions, case_id)
    assert before.due_at == step(1) + timedelta(minutes=30)
    arrived = step(1) + timedelta(minutes=minutes)

    response = await _post(
        api, case_id, _receipt("arrived", note="on site", at=arrived.isoformat())
    )

    assert response.status_code == 201, response.text
    body = response.json()
    case = await snapshot(sessions, case_id)
    assert (body["action"], body["status"], body["on_time"]) == ("arrived", "accepted", on_time)
    assert (case.status, case.version, case.due_at, case.overdue) == (
        "accepted", before.version + 1, None, False,
    )  # fmt: skip
    entry = case.history[-1]
    assert (entry.action, entry.at, entry.note) == ("arrived", arrived, "on site")
    assert entry.data["on_time"] is on_time
    assert entry.data["due_at"] == before.due_at.isoformat()
    events = await outbox(sessions, case_id)
    assert (events[-1].id, events[-1].type) == (body["event_id"], "gridwatch.case.updated")
    assert events[-1].body["data"]["due_at"] is None


async def test_the_loop_goes_on_after_arrival(api, sessions):
    case_id = await _entrapment_accepted(sessions)
    for number, receipt in enumerate(
        [_receipt("arrived"), _receipt("handled", note="freed")], start=1
    ):
        response = await _post(api, case_id, receipt | {"receipt_id": f"r-{number}"})
        assert response.status_code == 201, response.text
    case = await snapshot(sessions, case_id)
    assert case.status == "handled"
    assert case.due_at is not None  # the verification deadline


async def test_the_same_receipt_again_changes_nothing_and_gets_the_same_answer(api, sessions):
    case_id = await case_in(sessions, CaseStatus.DISPATCHED)
    first = await _post(api, case_id, _receipt("accepted", note="crew 3"))
    before = await snapshot(sessions, case_id)
    events = len(await outbox(sessions, case_id))

    again = await _post(api, case_id, _receipt("accepted", note="crew 3"))

    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    after = await snapshot(sessions, case_id)
    assert (after.version, len(after.history)) == (before.version, len(before.history))
    assert len(await outbox(sessions, case_id)) == events
    assert await _stored_receipts(sessions) == 1


async def test_one_receipt_posted_at_once_many_times_applies_once(api, sessions):
    case_id = await case_in(sessions, CaseStatus.DISPATCHED)

    responses = await asyncio.gather(*(_post(api, case_id, _receipt("accepted")) for _ in range(6)))

    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    case = await snapshot(sessions, case_id)
    assert [h.action for h in case.history] == ["report", "dispatch", "accept"]


@pytest.mark.parametrize(
    "other",
    [
        _receipt("accepted", note="another note"),
        _receipt("handled", note="done"),
    ],
)
async def test_a_receipt_id_used_for_something_else_is_409(api, sessions, other):
    case_id = await case_in(sessions, CaseStatus.DISPATCHED)
    assert (await _post(api, case_id, _receipt("accepted"))).status_code == 201

    response = await _post(api, case_id, other)

    assert response.status_code == 409
    assert response.json()["receipt_id"] == "r-1"
    assert (await snapshot(sessions, case_id)).status == "accepted"


@pytest.mark.parametrize(
    ("state", "receipt_type", "accepted_in"),
    [
        (CaseStatus.REPORTED, "accepted", ["dispatched"]),
        (CaseStatus.DISPATCHED, "handled", ["accepted"]),
        (CaseStatus.DISPATCHED, "arrived", ["accepted", "postponed"]),
        (CaseStatus.CLOSED, "arrived", ["accepted", "postponed"]),
    ],
)
async def test_a_receipt_the_state_refuses_is_409_naming_why(
    api, sessions, state, receipt_type, accepted_in
):
    case_id = await case_in(sessions, state)
    before = await snapshot(sessions, case_id)

    response = await _post(api, case_id, _receipt(receipt_type, note="n"))

    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["state"], problem["receipt"]) == (state, receipt_type)
    assert problem["accepted_in"] == accepted_in
    assert state in problem["detail"]
    after = await snapshot(sessions, case_id)
    assert (after.version, len(after.history)) == (before.version, len(before.history))
    assert await _stored_receipts(sessions) == 0  # not kept: the same id may come again later


async def test_a_refused_receipt_may_be_sent_again_once_the_case_is_ready(api, sessions):
    case_id = await case_in(sessions, CaseStatus.REPORTED)
    assert (await _post(api, case_id, _receipt("accepted"))).status_code == 409
    await drive(sessions, case_id, [Action.DISPATCH])
    assert (await _post(api, case_id, _receipt("accepted"))).status_code == 201


async def test_an_unknown_case_is_404(api):
    response = await _post(api, "GW-none", _receipt("accepted"))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_test_case_is_404_to_the_dispatch_system(api, sessions):
    async with sessions() as session, session.begin():
        change = await apply_alarm(
            session=session, alarm=alarm(AlarmTransition.RAISED), sensor=rain_sensor(), test=True
        )
    response = await _post(api, change.case_id, _receipt("accepted"))
    assert response.status_code == 404


async def test_only_dispatchers_and_admins_post_receipts(api, sessions):
    case_id = await case_in(sessions, CaseStatus.DISPATCHED)
    allowed = ROLE_MATRIX[Permission.CASES_RECEIPT]
    assert allowed == {Role.DISPATCHER, Role.ADMIN}
    for role in sorted(set(Role) - allowed):
        response = await _post(api, case_id, _receipt("accepted"), role=role)
        assert response.status_code == 403, (role, response.text)
    assert (await snapshot(sessions, case_id)).status == "dispatched"
    response = await _post(api, case_id, _receipt("accepted"), role=Role.ADMIN)
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "accepted"}, "receipt_id"),
        (_receipt("accepted", receipt_id="has space"), "receipt_id"),
        (_receipt("departed"), "type"),
        (_receipt("handled", evidence=["not a link"]), "evidence.0"),
        (_receipt("accepted", at="2999-01-01T00:00:00Z"), "at"),
        (_receipt("accepted", at="2026-07-20T09:00:00"), "at"),
        (_receipt("accepted", colour="red"), "colour"),
        (_receipt("handled", note="  "), "note"),
    ],
)
async def test_bad_receipts_are_422_naming_the_field(api, sessions, body, field):
    case_id = await case_in(sessions, CaseStatus.ACCEPTED)
    response = await _post(api, case_id, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]]
    assert await _stored_receipts(sessions) == 0
