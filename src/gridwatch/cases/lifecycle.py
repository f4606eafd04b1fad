"""The case state machine of the six-step closed loop (pure: no I/O).

Who may take an action is the API's role matrix (`api.roles`), since roles belong to API keys;
this module says which actions exist, where each leads, and what each needs.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from gridwatch.cases.events import CaseEventType
from gridwatch.cases.models import CaseStatus


class Action(StrEnum):
    """A step a person takes on a case."""

    DISPATCH = "dispatch"
    ACCEPT = "accept"
    FEEDBACK = "feedback"
    VERIFY = "verify"
    REJECT = "reject"
    CLOSE = "close"
    CANCEL = "cancel"
    POSTPONE = "postpone"
    APPROVE_POSTPONE = "approve_postpone"
    EVALUATE = "evaluate"
    REOPEN = "reopen"


class Input(StrEnum):
    """A field of a transition request."""

    NOTE = "note"
    UNIT = "unit"
    EVIDENCE = "evidence"
    DUE_AT = "due_at"
    SCORE = "score"
    OVERRIDE = "override"
    APPROVED = "approved"


# History actions written by the system rather than taken through the state machine.
REPORT = "report"
ESCALATE = "escalate"
ALARM_CLEARED = "alarm_cleared"
# Supervision (督办): the deadline is near, has passed, or the case went a grid level higher.
DUE_SOON = "due_soon"
OVERDUE = "overdue"
SUPERVISION_ESCALATED = "supervision_escalated"
# The dispatch system's receipt that the unit is on site (cases.receipts): no state of its own.
ARRIVED = "arrived"
ANNOTATIONS = frozenset(
    {ESCALATE, ALARM_CLEARED, DUE_SOON, OVERDUE, SUPERVISION_ESCALATED, ARRIVED}
)

_S = CaseStatus
_A = Action

TRANSITIONS: Mapping[tuple[CaseStatus, Action], CaseStatus] = {
    (_S.REPORTED, _A.DISPATCH): _S.DISPATCHED,
    (_S.REPORTED, _A.CANCEL): _S.CANCELLED,
    # Dispatching again reassigns the case to another unit before it is accepted.
    (_S.DISPATCHED, _A.DISPATCH): _S.DISPATCHED,
    (_S.DISPATCHED, _A.ACCEPT): _S.ACCEPTED,
    (_S.DISPATCHED, _A.CANCEL): _S.CANCELLED,
    (_S.ACCEPTED, _A.FEEDBACK): _S.HANDLED,
    # Only the unit that accepted the case knows it cannot finish in time.
    (_S.ACCEPTED, _A.POSTPONE): _S.POSTPONED,
    # Approved or denied, the unit goes on with the case; approval moves its deadline.
    (_S.POSTPONED, _A.APPROVE_POSTPONE): _S.ACCEPTED,
    (_S.HANDLED, _A.VERIFY): _S.VERIFIED,
    # Rework goes back to the unit, which accepts it again.
    (_S.HANDLED, _A.REJECT): _S.DISPATCHED,
    (_S.VERIFIED, _A.CLOSE): _S.CLOSED,
    (_S.CLOSED, _A.EVALUATE): _S.EVALUATED,
    (_S.CLOSED, _A.REOPEN): _S.REPORTED,
    (_S.EVALUATED, _A.REOPEN): _S.REPORTED,
    # A false alarm that turns out real is reported again, keeping its history.
    (_S.CANCELLED, _A.REOPEN): _S.REPORTED,
}

# Closed, evaluated and cancelled cases no longer hold their (sensor, rule) open key.
FINISHED = frozenset({_S.CLOSED, _S.EVALUATED, _S.CANCELLED})
# A recurring alarm brings back a case that was closed, not one cancelled as a false alarm.
REOPENED_BY_RECURRENCE = frozenset({_S.CLOSED, _S.EVALUATED})


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """What an action needs and may carry, and the event it emits."""

    event: CaseEventType
    required: frozenset[Input] = frozenset()
    optional: frozenset[Input] = frozenset()


def _spec(
    event: CaseEventType, required: Iterable[Input] = (), optional: Iterable[Input] = ()
) -> ActionSpec:
    # A note and evidence links are welcome on every action.
    optional = {*optional, Input.NOTE, Input.EVIDENCE} - set(required)
    return ActionSpec(event=event, required=frozenset(required), optional=frozenset(optional))


_E = CaseEventType
_I = Input

SPECS: Mapping[Action, ActionSpec] = {
    _A.DISPATCH: _spec(_E.DISPATCHED, required=[_I.UNIT], optional=[_I.DUE_AT]),
    _A.ACCEPT: _spec(_E.ACCEPTED),
    _A.FEEDBACK: _spec(_E.HANDLED, required=[_I.NOTE]),
    _A.VERIFY: _spec(_E.VERIFIED, optional=[_I.OVERRIDE]),
    _A.REJECT: _spec(_E.REWORKED, required=[_I.NOTE]),
    _A.CLOSE: _spec(_E.CLOSED),
    _A.CANCEL: _spec(_E.CANCELLED, required=[_I.NOTE]),
    _A.POSTPONE: _spec(_E.POSTPONED, required=[_I.NOTE, _I.DUE_AT]),
    _A.APPROVE_POSTPONE: _spec(_E.UPDATED, optional=[_I.APPROVED]),
    _A.EVALUATE: _spec(_E.EVALUATED, required=[_I.SCORE]),
    _A.REOPEN: _spec(_E.REOPENED, required=[_I.NOTE]),
}


class TransitionRefusedError(Exception):
    """The action is not allowed in the case's state, or a rule of the loop forbids it now."""

    def __init__(self, *, state: CaseStatus, action: Action, reason: str | None = None) -> None:
        self.state = state
        self.action = action
        self.allowed = allowed_actions(state)
        self.reason = reason
        super().__init__(
            reason
            or f"{action} is not allowed in state {state}"
            f" (allowed: {', '.join(self.allowed) or 'none'})"
        )


def allowed_actions(state: CaseStatus) -> tuple[Action, ...]:
    """The actions the loop allows in `state`, in the order Action lists them."""
    return tuple(action for action in Action if (state, action) in TRANSITIONS)


def next_state(state: CaseStatus, action: Action) -> CaseStatus:
    """Where `action` takes a case in `state`; TransitionRefusedError outside the table."""
    target = TRANSITIONS.get((state, action))
    if target is None:
        raise TransitionRefusedError(state=state, action=action)
    return target


def is_open(state: CaseStatus) -> bool:
    """Whether a case in `state` still holds its open key (absorbs its alarm's repeats)."""
    return state not in FINISHED


def request_problems(action: Action, given: Iterable[Input], *, denied: bool) -> dict[Input, str]:
    """Missing and unexpected inputs of a request, by field; empty when it is complete.

    `given` holds the inputs that carry a value (a blank note carries none); `denied` is an
    approve_postpone that refuses the postponement.
    """
    spec = SPECS[action]
    given = set(given)
    problems = dict.fromkeys(sorted(spec.required - given), f"required for {action}")
    unexpected = sorted(given - spec.required - spec.optional)
    problems |= dict.fromkeys(unexpected, f"not taken by {action}")
    # Overriding the sensor and refusing a postponement are judgements: they must say why.
    if Input.OVERRIDE in given and Input.NOTE not in given:
        problems[Input.NOTE] = "required with override"
    if denied and Input.NOTE not in given:
        problems[Input.NOTE] = "required when a postponement is denied"
    return problems


def sensor_gate(*, sensor_raised: bool, alarm_active: bool, override: bool) -> str | None:
    """Why a verify must wait (its sensor still alarms), or None when it may go ahead."""
    if sensor_raised and alarm_active and not override:
        return "the sensor's alarm is still active: verify after it clears, or override with a note"
    return None


def derive_state(actions: Iterable[str]) -> CaseStatus:
    """The state a recorded history leads to, replaying it through the table.

    Raises ValueError for a history the loop could not have produced.
    """
    state: CaseStatus | None = None
    for name in actions:
        if state is None:
            if name != REPORT:
                raise ValueError(f"a history starts with {REPORT}, not {name}")
            state = CaseStatus.REPORTED
        elif name in ANNOTATIONS:
            continue
        else:
            try:
                state = next_state(state, Action(name))
            except (ValueError, TransitionRefusedError) as err:
                raise ValueError(f"a history cannot hold {name} after {state}") from err
    if state is None:
        raise ValueError("an empty history has no state")
    return state
