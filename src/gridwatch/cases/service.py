"""Case operations; every change writes its history and outbox event in the caller's transaction."""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from gridwatch.cases import lifecycle, timing
from gridwatch.cases.dispatching import auto_dispatch
from gridwatch.cases.events import CaseEventType
from gridwatch.cases.journal import emit_event, record
from gridwatch.cases.models import Case, CaseStatus, reported_case
from gridwatch.cases.policy import CasePolicy, shipped_policy
from gridwatch.domain import AlarmEvent, AlarmTransition, Sensor, Severity
from gridwatch.domain.deadlines import Stage
from gridwatch.gateway.alarms import RaisedAlarms

SYSTEM_ACTOR = "rules"

_Statement = TypeVar("_Statement", bound=Select[Any])


@dataclass(frozen=True, slots=True)
class CaseChange:
    """What an alarm did to a case: the case and the event type emitted, if any."""

    case_id: str
    event_type: CaseEventType | None
    sensor_id: str = ""


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """Filters for listing cases; None means any."""

    status: str | None = None
    severity: Severity | None = None
    grid: str | None = None
    sensor_id: str | None = None
    open_only: bool = False
    include_test: bool = False
    maintenance: bool | None = False


def new_case_id(opened_at: datetime) -> str:
    """A readable, date-prefixed case id."""
    return f"GW-{opened_at:%Y%m%d}-{secrets.token_hex(5)}"


def case_key(alarm: AlarmEvent, *, test: bool) -> str:
    """The key of the one open case an alarm belongs to: (sensor, case group or rule).

    A test case (from a sensor being commissioned) is kept apart from live ones, so a test
    case still open when the sensor goes live never absorbs its first real alarm.
    """
    return f"test:{alarm.case_fingerprint}" if test else alarm.case_fingerprint


async def apply_alarms(
    *, session: AsyncSession, batch: Sequence[RaisedAlarms], policy: CasePolicy | None = None
) -> list[CaseChange]:
    """Apply a batch of sensors' alarms to their cases, in order, in the caller's transaction.

    The cases the batch may touch are read and locked first, in two statements whatever its
    size: the open case of each key, and the latest case of each key that has none open (a
    recurrence may reopen it). Then the changes are made in memory and written at the flush,
    a statement per table and one conditional UPDATE per changed case.
    """
    policy = policy or shipped_policy()
    keys = sorted({case_key(alarm, test=item.test) for item in batch for alarm in item.alarms})
    open_cases = await _open_cases(session, keys)
    latest = await _latest_cases(session, [key for key in keys if key not in open_cases])
    return [
        _apply(
            session=session,
            alarm=alarm,
            sensor=raised.sensor,
            test=raised.test,
            policy=policy,
            open_cases=open_cases,
            latest=latest,
        )
        for raised in batch
        for alarm in raised.alarms
    ]


async def _open_cases(session: AsyncSession, keys: Sequence[str]) -> dict[str, Case]:
    # Locked in key order, so two writers whose batches share cases wait for each other
    # instead of deadlocking.
    if not keys:
        return {}
    found = await session.scalars(
        select(Case)
        .where(Case.open_fingerprint.in_(keys))
        .order_by(Case.open_fingerprint)
        .with_for_update()
    )
    return {str(case.open_fingerprint): case for case in found}


async def _latest_cases(session: AsyncSession, keys: Sequence[str]) -> dict[str, Case]:
    """The most recently opened case of each key, locked (a recurrence may reopen it)."""
    if not keys:
        return {}
    newest = (
        select(Case.case_key, func.max(Case.opened_at).label("opened_at"))
        .where(Case.case_key.in_(keys))
        .group_by(Case.case_key)
        .subquery()
    )
    found = await session.scalars(
        select(Case)
        .join(
            newest,
            (Case.case_key == newest.c.case_key) & (Case.opened_at == newest.c.opened_at),
        )
        .order_by(Case.case_key, Case.id)
        .with_for_update(of=Case)
    )
    latest: dict[str, Case] = {}
    for case in found:
        # Two cases of a key opened in the same instant: the greater id, as ever.
        latest[str(case.case_key)] = case
    return latest


async def apply_alarm(
    *,
    session: AsyncSession,
    alarm: AlarmEvent,
    sensor: Sensor,
    test: bool = False,
    policy: CasePolicy | None = None,
) -> CaseChange:
    """`apply_alarms` for one alarm."""
    batch = [RaisedAlarms(sensor, (alarm,), test=test)]
    (change,) = await apply_alarms(session=session, batch=batch, policy=policy)
    return change


def _apply(
    *,
    session: AsyncSession,
    alarm: AlarmEvent,
    sensor: Sensor,
    test: bool,
    policy: CasePolicy,
    open_cases: dict[str, Case],
    latest: dict[str, Case],
) -> CaseChange:
    """Open, update or annotate the one open case of the alarm's key (see `case_key`).

    An alarm coming back within the policy's `reopen_within` of its last case being closed
    reopens that case: the same problem recurring belongs with its history, not in a new
    case. An opened or reopened case gets its dispatch deadline and, where the routing table
    has a route for it and the sensor's owner, is dispatched in the same transaction.
    `open_cases` holds the batch's open cases by key, and gains the ones this alarm opens or
    reopens; `latest` the latest case of the other keys.
    """
    open_key = case_key(alarm, test=test)
    case = open_cases.get(open_key)
    if case is None:
        if alarm.transition is AlarmTransition.CLEARED:
            # Nothing open to annotate (closed by people before the alarm cleared).
            return CaseChange(case_id="", event_type=None, sensor_id=sensor.id)
        closed = _reopenable(latest.get(open_key), since=alarm.at - policy.reopen_within)
        if closed is not None:
            _reopen(case=closed, alarm=alarm, open_key=open_key, policy=policy)
            event = emit_event(session, closed, CaseEventType.REOPENED, alarm.at)
            case = closed
        else:
            case = _open_case(
                session=session, alarm=alarm, sensor=sensor, open_key=open_key, test=test
            )
            timing.start_stage(case, policy, Stage.DISPATCH, alarm.at)
            event = emit_event(session, case, CaseEventType.OPENED, alarm.at)
        open_cases[open_key] = case
        auto_dispatch(session=session, case=case, policy=policy, owner=sensor.owner, at=alarm.at)
        return CaseChange(case.id, event, sensor.id)
    change = _update_case(session=session, case=case, alarm=alarm, policy=policy)
    return CaseChange(case.id, change, sensor.id)


def _reopenable(latest: Case | None, *, since: datetime) -> Case | None:
    # Only the key's latest case counts: one cancelled as a false alarm since is not reopened.
    if latest is None or CaseStatus(latest.status) not in lifecycle.REOPENED_BY_RECURRENCE:
        return None
    if latest.closed_at is None or latest.closed_at < since:
        return None
    return latest


def _reopen(*, case: Case, alarm: AlarmEvent, open_key: str, policy: CasePolicy) -> None:
    previous = CaseStatus(case.status)
    case.status = lifecycle.next_state(previous, lifecycle.Action.REOPEN).value
    case.open_fingerprint = open_key
    case.closed_at = None
    # The evaluation was of the episode that ended; the history keeps it.
    case.score = None
    case.reopen_count += 1
    case.occurrences += 1
    case.alarm_active = True
    case.last_seen_at = max(case.last_seen_at, alarm.at)
    case.updated_at = max(case.updated_at, alarm.at)
    # A new episode: its severity is the alarm's now, even if the last one ended higher.
    case.severity = alarm.severity.value
    case.title = alarm.title
    case.evidence = _evidence(alarm)
    case.version += 1
    timing.start_stage(case, policy, Stage.DISPATCH, alarm.at)
    record(
        case,
        at=alarm.at,
        actor=SYSTEM_ACTOR,
        action=lifecycle.Action.REOPEN,
        from_status=previous,
        note=f"the alarm recurred within {policy.reopen_within} of closing",
        data={
            "recurrence": True,
            "severity": alarm.severity.value,
            "values": dict(alarm.values),
            "reopenings": case.reopen_count,
        },
    )


def _open_case(
    *, session: AsyncSession, alarm: AlarmEvent, sensor: Sensor, open_key: str, test: bool
) -> Case:
    case = reported_case(
        id=new_case_id(alarm.at),
        severity=alarm.severity.value,
        category=alarm.category,
        kind=sensor.kind.value,
        title=alarm.title,
        at=alarm.at,
        sensor_id=sensor.id,
        grid=sensor.grid,
        rule_id=alarm.rule_id,
        open_fingerprint=open_key,
        case_key=open_key,
        alarm_active=True,
        drill=test,
        maintenance=alarm.maintenance,
        evidence=_evidence(alarm),
    )
    record(
        case,
        at=alarm.at,
        actor=SYSTEM_ACTOR,
        action=lifecycle.REPORT,
        from_status=None,
        note=alarm.title,
        data={
            "rule_id": alarm.rule_id,
            "severity": alarm.severity.value,
            "values": dict(alarm.values),
        },
    )
    session.add(case)
    return case


def _update_case(
    *, session: AsyncSession, case: Case, alarm: AlarmEvent, policy: CasePolicy
) -> CaseEventType | None:
    case.version += 1
    case.updated_at = max(case.updated_at, alarm.at)
    if alarm.transition is AlarmTransition.CLEARED:
        case.alarm_active = False
        _record(case, alarm, action=lifecycle.ALARM_CLEARED, note="the alarm condition cleared")
        return emit_event(session, case, CaseEventType.ALARM_CLEARED, alarm.at)
    case.occurrences += 1
    case.last_seen_at = max(case.last_seen_at, alarm.at)
    case.alarm_active = True
    case.evidence = _evidence(alarm, case.evidence)
    if Severity(alarm.severity) > Severity(case.severity):
        previous = case.severity
        case.severity = alarm.severity.value
        case.title = alarm.title
        timing.tighten(case, policy)
        note = f"severity {previous} -> {alarm.severity}"
        _record(case, alarm, action=lifecycle.ESCALATE, note=note)
        return emit_event(session, case, CaseEventType.ESCALATED, alarm.at)
    # A repeat only counts: one webhook per reading would flood the dispatch system, and
    # the next emitted event carries the occurrence count anyway.
    return None


def _evidence(alarm: AlarmEvent, previous: dict[str, Any] | None = None) -> dict[str, object]:
    # Why the alarm fired, so the case shows it: the values, the window and the comparison;
    # and, under `rules`, the latest of each rule that reached the case (a case group folds
    # several rules into one case, and the officer must see every signal that fired).
    latest: dict[str, object] = {"values": dict(alarm.values)}
    if alarm.why:
        latest["why"] = alarm.why
    if alarm.window:
        latest["window"] = alarm.window
    rules = dict((previous or {}).get("rules") or {})
    rules[alarm.rule_id] = latest | {"severity": alarm.severity.value, "at": alarm.at.isoformat()}
    return latest | {"rule_id": alarm.rule_id, "rules": rules}


def _record(case: Case, alarm: AlarmEvent, *, action: str, note: str) -> None:
    record(
        case,
        at=alarm.at,
        actor=SYSTEM_ACTOR,
        action=action,
        from_status=CaseStatus(case.status),
        note=note,
        data={
            "rule_id": alarm.rule_id,
            "severity": alarm.severity.value,
            "values": dict(alarm.values),
        },
    )


async def get_case(*, session: AsyncSession, case_id: str) -> Case | None:
    """The case with its history, or None."""
    return await session.scalar(
        select(Case).where(Case.id == case_id).options(selectinload(Case.history))
    )


def _filtered(statement: _Statement, case_filter: CaseFilter) -> _Statement:
    if case_filter.status is not None:
        statement = statement.where(Case.status == case_filter.status)
    if case_filter.severity is not None:
        statement = statement.where(Case.severity == case_filter.severity.value)
    if case_filter.grid is not None:
        statement = statement.where(Case.grid == case_filter.grid)
    if case_filter.sensor_id is not None:
        statement = statement.where(Case.sensor_id == case_filter.sensor_id)
    if case_filter.maintenance is not None:
        statement = statement.where(Case.maintenance.is_(case_filter.maintenance))
    if not case_filter.include_test:
        statement = statement.where(Case.drill.is_(False))
    if case_filter.open_only:
        statement = statement.where(Case.open_fingerprint.is_not(None))
    return statement


async def list_cases(
    *, session: AsyncSession, case_filter: CaseFilter, limit: int, offset: int
) -> tuple[Sequence[Case], int]:
    """A page of cases, newest first, and the total matching the filter."""
    page = await session.scalars(
        _filtered(select(Case), case_filter)
        .order_by(Case.opened_at.desc(), Case.id)
        .limit(limit)
        .offset(offset)
    )
    total = await session.scalar(_filtered(select(func.count()).select_from(Case), case_filter))
    return page.all(), int(total or 0)
