"""The case sink: batches in one transaction, races with officers and other writers, bugs."""

import asyncio
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, select

from gridwatch.cases import transitions
from gridwatch.cases.lifecycle import Action
from gridwatch.cases.models import Case, OutboxEvent
from gridwatch.cases.requests import TransitionRequest
from gridwatch.cases.service import apply_alarm, get_case
from gridwatch.domain import AlarmTransition, Severity
from gridwatch.gateway.alarms import AlarmService, RaisedAlarms, TransientError
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.rules import RulePack
from gridwatch.service.case_sink import DatabaseCaseSink
from tests.cases.support import ADMIN, request, step
from tests.integration.factories import alarm, rain_sensor


async def test_an_escalation_racing_an_officer_waits_and_lands_on_the_new_version(sessions):
    sink = DatabaseCaseSink(sessions=sessions, metrics=Metrics(), on_committed=lambda: None)
    sensor = rain_sensor()
    await sink([RaisedAlarms(sensor, [alarm(AlarmTransition.RAISED, Severity.YELLOW)])])
    async with sessions() as session:
        (case_id,) = [c.id for c in await _all_cases(session)]

    escalation = [alarm(AlarmTransition.ESCALATED, Severity.RED, seconds=60)]
    async with sessions() as officer:
        await officer.begin()
        await transitions.transition(
            session=officer,
            case_id=case_id,
            versions=frozenset({1}),
            request=TransitionRequest.model_validate(request(Action.DISPATCH)),
            actor=ADMIN,
            at=step(1),
        )
        # The escalation must wait for the officer's write, never overwrite it.
        racing = asyncio.create_task(sink([RaisedAlarms(sensor, escalation)]))
        await asyncio.sleep(0.5)
        assert not racing.done()
        await officer.commit()
    if _dialect(sessions) == "sqlite":
        # SQLite has no row locks: the escalation's read was stale, its write matched no row,
        # and that is a transient failure the pipeline retries (here by hand).
        with pytest.raises(TransientError):
            await asyncio.wait_for(racing, 10)
        await sink([RaisedAlarms(sensor, escalation)])
    else:
        # PostgreSQL: the escalation's SELECT ... FOR UPDATE waited and read the new version.
        await asyncio.wait_for(racing, 10)
    async with sessions() as session:
        case = await get_case(session=session, case_id=case_id)
    assert case is not None
    assert (case.status, case.severity, case.version) == ("dispatched", "red", 3)


def _dialect(sessions) -> str:
    return str(sessions.kw["bind"].dialect.name)


async def _all_cases(session):
    return (await session.scalars(select(Case))).all()


async def test_two_writers_opening_one_case_make_one_case_and_lose_no_alarm(sessions):
    sink = DatabaseCaseSink(sessions=sessions, metrics=Metrics(), on_committed=lambda: None)
    sensor = rain_sensor()
    first = alarm(AlarmTransition.RAISED, Severity.YELLOW)
    second = [alarm(AlarmTransition.RAISED, Severity.RED, seconds=1)]
    async with sessions() as other_writer:
        await other_writer.begin()
        await apply_alarm(session=other_writer, alarm=first, sensor=sensor)
        await other_writer.flush()  # its INSERT is written, not committed
        # No case row exists yet for the second writer to lock: it inserts too, and waits.
        racing = asyncio.create_task(sink([RaisedAlarms(sensor, second)]))
        await asyncio.sleep(0.5)
        assert not racing.done()
        await other_writer.commit()
    with pytest.raises(TransientError, match="opened concurrently"):
        await asyncio.wait_for(racing, 10)
    await sink([RaisedAlarms(sensor, second)])  # the alarm service's retry finds the case
    async with sessions() as session:
        cases = await _all_cases(session)
    assert [(c.severity, c.occurrences) for c in cases] == [("red", 2)]


async def test_a_batch_of_readings_is_one_transaction_in_reading_order(sessions):
    statements = _count_statements(sessions)
    sink = DatabaseCaseSink(sessions=sessions, metrics=Metrics(), on_committed=lambda: None)
    gauges = [rain_sensor(f"RG-{n}") for n in range(3)]
    batch = [
        RaisedAlarms(gauge, [alarm(AlarmTransition.RAISED, sensor_id=gauge.id)]) for gauge in gauges
    ] + [
        # Later readings of the first gauge in the same batch: its case, just opened here.
        RaisedAlarms(gauges[0], [alarm(AlarmTransition.REPEATED, sensor_id="RG-0", seconds=5)]),
        RaisedAlarms(
            gauges[0],
            [alarm(AlarmTransition.ESCALATED, Severity.RED, sensor_id="RG-0", seconds=10)],
        ),
    ]
    await sink(batch)
    written = list(statements)
    async with sessions() as session:
        cases = {c.sensor_id: c for c in await _all_cases(session)}
        events = (
            await session.execute(
                select(OutboxEvent.case_id, OutboxEvent.sequence, OutboxEvent.type).order_by(
                    OutboxEvent.case_id, OutboxEvent.sequence
                )
            )
        ).all()
    first = cases["RG-0"]
    assert (first.severity, first.occurrences, first.last_sequence) == ("red", 3, 2)
    assert [(s, t) for c, s, t in events if c == first.id] == [
        (1, "gridwatch.case.opened"), (2, "gridwatch.case.escalated"),
    ]  # fmt: skip
    assert sorted(cases) == ["RG-0", "RG-1", "RG-2"]
    # One read of the open cases, the writes batched by table: not a round trip per alarm.
    assert len(written) <= 8, written


async def test_an_alarm_that_trips_a_bug_loses_only_itself(sessions, caplog):
    metrics = Metrics()
    sink = DatabaseCaseSink(sessions=sessions, metrics=metrics, on_committed=lambda: None)
    gauges = [rain_sensor(f"RG-{n}") for n in range(3)]
    service = AlarmService(
        rules=RulePack(()), registry=SensorRegistry(gauges), cases=sink, metrics=metrics
    )
    # A value no JSON column takes: the kind of bug a rule's output could trip in the store.
    unstorable: dict[str, Any] = {"rain_mm": Decimal("1.5")}
    poisoned = replace(alarm(AlarmTransition.RAISED, sensor_id="RG-1"), values=unstorable)
    batch = [
        service.raised(gauges[0], [alarm(AlarmTransition.RAISED, sensor_id="RG-0")]),
        service.raised(gauges[1], [poisoned]),
        service.raised(gauges[2], [alarm(AlarmTransition.RAISED, sensor_id="RG-2")]),
    ]
    await asyncio.wait_for(service.apply(batch), 10)
    async with sessions() as session:
        assert sorted(str(c.sensor_id) for c in await _all_cases(session)) == ["RG-0", "RG-2"]
    assert metrics.registry.get_sample_value("gridwatch_case_failures_total") == 1
    assert "alarms not applied to cases sensor=RG-1 rules=burst" in caplog.text


def _count_statements(sessions) -> list[str]:
    seen: list[str] = []

    def counted(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement.split("(")[0].strip()[:40])

    event.listen(sessions.kw["bind"].sync_engine, "before_cursor_execute", counted)
    return seen
