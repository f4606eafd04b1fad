"""The case state machine, exhaustively: table, inputs, the sensor gate, history replay, roles."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.api.roles import ROLE_MATRIX, Role, action_permission
from gridwatch.api.routes.cases import etag, parse_if_match
from gridwatch.cases import lifecycle
from gridwatch.cases.events import CaseEventType
from gridwatch.cases.lifecycle import (
    ANNOTATIONS,
    REPORT,
    SPECS,
    TRANSITIONS,
    Action,
    Input,
    TransitionRefusedError,
)
from gridwatch.cases.models import CaseStatus
from gridwatch.cases.requests import TransitionRequest
from tests.cases.support import PATHS, request

S, A = CaseStatus, Action
EXPECTED = {
    (S.REPORTED, A.DISPATCH): S.DISPATCHED,
    (S.REPORTED, A.CANCEL): S.CANCELLED,
    (S.DISPATCHED, A.DISPATCH): S.DISPATCHED,
    (S.DISPATCHED, A.ACCEPT): S.ACCEPTED,
    (S.DISPATCHED, A.CANCEL): S.CANCELLED,
    (S.ACCEPTED, A.FEEDBACK): S.HANDLED,
    (S.ACCEPTED, A.POSTPONE): S.POSTPONED,
    (S.POSTPONED, A.APPROVE_POSTPONE): S.ACCEPTED,
    (S.HANDLED, A.VERIFY): S.VERIFIED,
    (S.HANDLED, A.REJECT): S.DISPATCHED,
    (S.VERIFIED, A.CLOSE): S.CLOSED,
    (S.CLOSED, A.EVALUATE): S.EVALUATED,
    (S.CLOSED, A.REOPEN): S.REPORTED,
    (S.EVALUATED, A.REOPEN): S.REPORTED,
    (S.CANCELLED, A.REOPEN): S.REPORTED,
}
REFUSED = [(s, a) for s in CaseStatus for a in Action if (s, a) not in EXPECTED]
OFFICER_ACTIONS = {A.DISPATCH, A.VERIFY, A.REJECT, A.CLOSE, A.CANCEL, A.APPROVE_POSTPONE,
                   A.EVALUATE, A.REOPEN}  # fmt: skip
DISPATCHER_ACTIONS = {A.ACCEPT, A.FEEDBACK, A.POSTPONE}


def test_the_table_is_the_loop():
    assert dict(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize(("state", "action"), list(EXPECTED))
def test_an_allowed_action_leads_where_the_table_says(state, action):
    assert lifecycle.next_state(state, action) is EXPECTED[state, action]
    assert action in lifecycle.allowed_actions(state)


@pytest.mark.parametrize(("state", "action"), REFUSED)
def test_any_other_action_is_refused_naming_the_allowed_ones(state, action):
    with pytest.raises(TransitionRefusedError) as refused:
        lifecycle.next_state(state, action)
    allowed = tuple(a for a in Action if (state, a) in EXPECTED)
    assert refused.value.allowed == allowed
    assert refused.value.state is state
    assert str(state) in str(refused.value)


def test_every_state_is_reachable_by_its_path():
    assert set(PATHS) == set(CaseStatus)
    assert {state: lifecycle.derive_state([REPORT, *PATHS[state]]) for state in PATHS} == {
        state: state for state in PATHS
    }


@pytest.mark.parametrize(
    ("state", "is_open"),
    [(s, s not in {S.CLOSED, S.EVALUATED, S.CANCELLED}) for s in CaseStatus],
)
def test_finished_cases_release_their_open_key(state, is_open):
    assert lifecycle.is_open(state) is is_open


EVENTS = {
    A.DISPATCH: "dispatched", A.ACCEPT: "accepted", A.FEEDBACK: "handled",
    A.VERIFY: "verified", A.REJECT: "reworked", A.CLOSE: "closed", A.CANCEL: "cancelled",
    A.POSTPONE: "postponed", A.APPROVE_POSTPONE: "updated", A.EVALUATE: "evaluated",
    A.REOPEN: "reopened",
}  # fmt: skip


@pytest.mark.parametrize("action", list(Action))
def test_each_action_emits_its_event(action):
    assert SPECS[action].event is CaseEventType(f"gridwatch.case.{EVENTS[action]}")


REQUIRED = {
    A.DISPATCH: {Input.UNIT}, A.FEEDBACK: {Input.NOTE}, A.REJECT: {Input.NOTE},
    A.CANCEL: {Input.NOTE}, A.POSTPONE: {Input.NOTE, Input.DUE_AT}, A.EVALUATE: {Input.SCORE},
    A.REOPEN: {Input.NOTE},
}  # fmt: skip


@pytest.mark.parametrize("action", list(Action))
def test_required_inputs(action):
    assert SPECS[action].required == REQUIRED.get(action, set())
    complete = TransitionRequest.model_validate(request(action))
    assert lifecycle.request_problems(action, complete.given(), denied=False) == {}
    missing = dict.fromkeys(REQUIRED.get(action, set()), f"required for {action}")
    assert lifecycle.request_problems(action, set(), denied=False) == missing


@pytest.mark.parametrize(
    ("action", "field"),
    [
        (A.ACCEPT, Input.UNIT),
        (A.CLOSE, Input.SCORE),
        (A.FEEDBACK, Input.OVERRIDE),
        (A.DISPATCH, Input.APPROVED),
        (A.VERIFY, Input.DUE_AT),
    ],
)
def test_inputs_an_action_does_not_take_are_refused(action, field):
    given = TransitionRequest.model_validate(request(action)).given() | {field}
    problems = lifecycle.request_problems(action, given, denied=False)
    assert problems[field] == f"not taken by {action}"


@pytest.mark.parametrize(
    ("action", "given", "denied", "problem"),
    [
        (A.VERIFY, {Input.OVERRIDE}, False, "required with override"),
        (A.APPROVE_POSTPONE, {Input.APPROVED}, True, "required when a postponement is denied"),
    ],
)
def test_judgements_need_a_note(action, given, denied, problem):
    assert lifecycle.request_problems(action, given, denied=denied) == {Input.NOTE: problem}
    with_note = {*given, Input.NOTE}
    assert lifecycle.request_problems(action, with_note, denied=denied) == {}


def test_a_blank_note_is_no_note():
    assert Input.NOTE not in TransitionRequest(action=A.CANCEL, note="   ").given()


@pytest.mark.parametrize(
    ("sensor_raised", "alarm_active", "override", "waits"),
    [
        (True, True, False, True),
        (True, True, True, False),
        (True, False, False, False),
        (False, False, False, False),
        (False, True, False, False),
    ],
)
def test_sensor_gate(sensor_raised, alarm_active, override, waits):
    reason = lifecycle.sensor_gate(
        sensor_raised=sensor_raised, alarm_active=alarm_active, override=override
    )
    assert (reason is not None) is waits


@pytest.mark.parametrize(
    "history",
    [[], [A.DISPATCH.value], [REPORT, REPORT], [REPORT, A.CLOSE.value], [REPORT, "teleport"]],
)
def test_a_history_the_loop_cannot_produce_is_refused(history):
    with pytest.raises(ValueError, match="history"):
        lifecycle.derive_state(history)


def _walk(attempts):
    # The model a case follows: refused attempts leave no trace, annotations no move.
    state, history = CaseStatus.REPORTED, [REPORT]
    for attempt in attempts:
        if attempt in ANNOTATIONS:
            history.append(attempt)
            continue
        target = TRANSITIONS.get((state, attempt))
        history += [attempt.value] if target else []
        state = target or state
    return state, history


@given(st.lists(st.sampled_from([*Action, *sorted(ANNOTATIONS)]), max_size=40))
def test_replaying_the_recorded_history_gives_the_state(attempts):
    state, history = _walk(attempts)
    assert lifecycle.derive_state(history) is state


@pytest.mark.parametrize(("action", "role"), [(a, r) for a in Action for r in Role])
def test_who_may_take_each_action(action, role):
    duties = {Role.OFFICER: OFFICER_ACTIONS, Role.DISPATCHER: DISPATCHER_ACTIONS,
              Role.ADMIN: set(Action), Role.INSTALLER: set(), Role.VIEWER: set()}  # fmt: skip
    assert (role in ROLE_MATRIX[action_permission(action)]) is (action in duties[role])


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        ('"3"', {3}),
        ('W/"3"', {3}),
        (' "3" , W/"4"', {3, 4}),
        ("3", None),
        ("*", None),
        ('"three"', None),
        ('"3', None),
        ("", None),
    ],
)
def test_if_match(header, versions):
    parsed = parse_if_match(header)
    assert (set(parsed) if parsed is not None else None) == versions


def test_etag_round_trips():
    assert parse_if_match(etag(17)) == frozenset({17})
