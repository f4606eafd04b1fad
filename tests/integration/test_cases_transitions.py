"""POST /cases/{id}/transitions on SQLite and PostgreSQL: the whole table, roles, If-Match."""

import asyncio

import pytest

from gridwatch.api.roles import ROLE_MATRIX, Role, action_permission
from gridwatch.cases.lifecycle import SPECS, TRANSITIONS, Action, allowed_actions
from gridwatch.cases.models import CaseStatus
from tests.cases.support import PATHS, case_in, outbox, request, snapshot
from tests.integration.apiclient import running_api

ALLOWED = list(TRANSITIONS)
REFUSED = [(s, a) for s in CaseStatus for a in Action if (s, a) not in TRANSITIONS]
# A state each action is allowed in, to try it from.
SOURCE = {action: next(s for s, a in TRANSITIONS if a is action) for action in Action}
DUTY = {Role.OFFICER, Role.DISPATCHER}


@pytest.fixture
async def api(sessions):
    async with running_api(sessions) as api:
        yield api


async def _act(api, case_id, body, *, role=Role.ADMIN, version=None, headers=None):
    if headers is None:
        case = await api.client.get(f"/api/v1/cases/{case_id}", headers=api.as_role(role))
        headers = {"If-Match": case.headers["ETag"] if version is None else f'"{version}"'}
    return await api.client.post(
        f"/api/v1/cases/{case_id}/transitions", json=body, headers=api.as_role(role) | headers
    )


@pytest.mark.parametrize(("state", "action"), ALLOWED)
async def test_an_allowed_action_moves_records_and_emits(api, sessions, state, action):
    case_id = await case_in(sessions, state)
    before = await snapshot(sessions, case_id)

    response = await _act(api, case_id, request(action))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == TRANSITIONS[state, action]
    assert body["version"] == before.version + 1
    assert response.headers["ETag"] == f'"{before.version + 1}"'
    entry = body["history"][-1]
    assert (entry["action"], entry["from_status"], entry["to_status"]) == (
        action, state, TRANSITIONS[state, action],
    )  # fmt: skip
    assert entry["actor"].startswith("key_")
    assert entry["data"]["actor_name"] == "test admin"
    assert len(body["history"]) == len(before.history) + 1
    events = await outbox(sessions, case_id)
    assert (events[-1].type, events[-1].sequence) == (SPECS[action].event, len(events))
    assert events[-1].body["data"]["status"] == TRANSITIONS[state, action]
    assert events[-1].body["data"]["sequence"] == len(events)
    assert events[-1].body["data"]["version"] == before.version + 1


@pytest.mark.parametrize(("state", "action"), REFUSED)
async def test_any_other_action_is_409_naming_the_allowed_ones(api, sessions, state, action):
    case_id = await case_in(sessions, state)
    events_before = len(await outbox(sessions, case_id))

    response = await _act(api, case_id, request(action))

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["state"], problem["action"]) == (state, action)
    assert problem["allowed"] == [a.value for a in allowed_actions(state)]
    after = await snapshot(sessions, case_id)
    assert (after.status, after.version, len(after.history)) == (state, len(PATHS[state]) + 1,
                                                                 len(PATHS[state]) + 1)  # fmt: skip
    assert len(await outbox(sessions, case_id)) == events_before


@pytest.mark.parametrize("action", list(Action))
async def test_each_action_is_taken_only_by_its_roles(api, sessions, action):
    case_id = await case_in(sessions, SOURCE[action])
    permitted = ROLE_MATRIX[action_permission(action)]
    forbidden = [role for role in Role if role not in permitted]
    for role in forbidden:
        response = await _act(api, case_id, request(action), role=role, version=1)
        assert response.status_code == 403, (role, response.text)
    assert (await snapshot(sessions, case_id)).status == SOURCE[action]
    (duty,) = permitted & DUTY
    response = await _act(api, case_id, request(action), role=duty)
    assert response.status_code == 200, response.text


async def test_get_gives_the_version_as_etag(api, sessions):
    case_id = await case_in(sessions, CaseStatus.ACCEPTED)
    response = await api.client.get(f"/api/v1/cases/{case_id}", headers=api.as_role(Role.VIEWER))
    assert response.headers["ETag"] == f'"{response.json()["version"]}"' == '"3"'


async def test_a_weak_etag_is_accepted(api, sessions):
    case_id = await case_in(sessions, CaseStatus.REPORTED)
    body = request(Action.DISPATCH)
    response = await _act(api, case_id, body, headers={"If-Match": 'W/"1"'})
    assert response.status_code == 200, response.text


async def test_a_stale_version_is_412_and_changes_nothing(api, sessions):
    case_id = await case_in(sessions, CaseStatus.DISPATCHED)
    response = await _act(api, case_id, request(Action.ACCEPT), version=1)
    assert response.status_code == 412
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["ETag"] == '"2"'
    assert response.json()["current_version"] == 2
    after = await snapshot(sessions, case_id)
    assert (after.status, after.version, len(after.history)) == ("dispatched", 2, 2)
    assert len(await outbox(sessions, case_id)) == 2


@pytest.mark.parametrize(
    ("headers", "status"), [({}, 428), ({"If-Match": "*"}, 400), ({"If-Match": "2"}, 400)]
)
async def test_a_write_needs_a_version_etag(api, sessions, headers, status):
    case_id = await case_in(sessions, CaseStatus.REPORTED)
    response = await _act(api, case_id, request(Action.DISPATCH), headers=headers)
    assert response.status_code == status
    assert (await snapshot(sessions, case_id)).version == 1


async def test_an_unknown_case_is_404(api):
    response = await _act(api, "GW-none", request(Action.DISPATCH), headers={"If-Match": '"1"'})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "dispatch"}, "unit"),
        ({"action": "cancel", "note": "  "}, "note"),
        ({"action": "accept", "unit": "x"}, "unit"),
        ({"action": "evaluate", "score": 6}, "score"),
        ({"action": "postpone", "note": "n", "due_at": "2020-01-01T00:00:00Z"}, "due_at"),
        ({"action": "postpone", "note": "n", "due_at": "2100-01-01T00:00:00"}, "due_at"),
        ({"action": "fly"}, "action"),
        ({"action": "accept", "colour": "red"}, "colour"),
    ],
)
async def test_bad_inputs_are_422_naming_the_field(api, sessions, body, field):
    case_id = await case_in(sessions, CaseStatus.REPORTED)
    response = await _act(api, case_id, body)
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize(
    "bodies",
    [
        [request(Action.DISPATCH, unit=f"unit-{n}") for n in range(8)],
        [request(Action.DISPATCH), request(Action.CANCEL)] * 4,
    ],
)
async def test_of_concurrent_transitions_at_one_version_exactly_one_wins(api, sessions, bodies):
    case_id = await case_in(sessions, CaseStatus.REPORTED)
    responses = await asyncio.gather(
        *(_act(api, case_id, body, headers={"If-Match": '"1"'}) for body in bodies)
    )
    codes = sorted(response.status_code for response in responses)
    assert codes == [200] + [412] * (len(bodies) - 1), [r.text for r in responses]
    (winner,) = [response.json() for response in responses if response.status_code == 200]
    after = await snapshot(sessions, case_id)
    assert (after.version, len(after.history), after.status) == (2, 2, winner["status"])
    assert after.history[-1].data.get("unit") == winner["unit"]
    events = await outbox(sessions, case_id)
    assert [e.sequence for e in events] == [1, 2]


async def test_openapi_publishes_the_route_and_action_permissions(api):
    openapi = (await api.client.get("/openapi.json")).json()
    operation = openapi["paths"]["/api/v1/cases/{case_id}/transitions"]["post"]
    assert operation["x-permission"] == "cases:transition"
    assert operation["x-action-permissions"]["verify"] == "cases:verify"
    assert openapi["paths"]["/api/v1/cases"]["post"]["x-permission"] == "cases:report"
