"""Alarm → case on a real database: one open case per (sensor, rule), outbox in the same commit."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, update

# Imported for their side effect: every table module registers itself in the metadata.
import gridwatch.api.keys
import gridwatch.dispatch.models
import gridwatch.registry.models  # noqa: F401
from gridwatch.cases.models import Case, CaseHistory, OutboxEvent
from gridwatch.cases.service import apply_alarm, get_case
from gridwatch.domain import AlarmTransition, Severity
from gridwatch.gateway.db import Base
from tests.integration.factories import alarm, rain_sensor


async def _apply(sessions, *alarms):
    sensor = rain_sensor()
    changes = []
    for event in alarms:
        async with sessions() as session, session.begin():
            changes.append(await apply_alarm(session=session, alarm=event, sensor=sensor))
    return changes


async def _outbox(sessions):
    async with sessions() as session:
        rows = await session.scalars(select(OutboxEvent).order_by(OutboxEvent.sequence))
        return [(e.case_id, e.sequence, e.type) for e in rows]


async def test_alarm_lifecycle_updates_one_case(sessions):
    changes = await _apply(
        sessions,
        alarm(AlarmTransition.RAISED, Severity.BLUE),
        alarm(AlarmTransition.REPEATED, Severity.BLUE, seconds=5),
        alarm(AlarmTransition.ESCALATED, Severity.ORANGE, seconds=10),
        alarm(AlarmTransition.CLEARED, Severity.ORANGE, seconds=15),
    )
    case_ids = {change.case_id for change in changes}
    assert len(case_ids) == 1
    (case_id,) = case_ids
    assert [c.event_type.value if c.event_type else None for c in changes] == [
        "gridwatch.case.opened",
        None,
        "gridwatch.case.escalated",
        "gridwatch.case.alarm_cleared",
    ]
    async with sessions() as session:
        case = await get_case(session=session, case_id=case_id)
    assert case is not None
    assert (case.status, case.severity, case.occurrences, case.alarm_active) == (
        "reported", "orange", 3, False,
    )  # fmt: skip
    assert case.version == 4
    assert [h.action for h in case.history] == ["report", "escalate", "alarm_cleared"]
    assert await _outbox(sessions) == [
        (case_id, 1, "gridwatch.case.opened"),
        (case_id, 2, "gridwatch.case.escalated"),
        (case_id, 3, "gridwatch.case.alarm_cleared"),
    ]


async def test_a_raise_while_a_case_is_open_never_opens_a_second_one(sessions):
    await _apply(
        sessions,
        alarm(AlarmTransition.RAISED),
        alarm(AlarmTransition.CLEARED, seconds=5),
        alarm(AlarmTransition.RAISED, seconds=10),
    )
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Case)) == 1
        case = await session.scalar(select(Case))
    assert case is not None
    assert (case.occurrences, case.alarm_active) == (2, True)


async def test_after_closing_the_next_alarm_opens_a_new_case(sessions):
    (first,) = await _apply(sessions, alarm(AlarmTransition.RAISED))
    async with sessions() as session, session.begin():
        await session.execute(update(Case).values(status="closed", open_fingerprint=None))
    (second,) = await _apply(sessions, alarm(AlarmTransition.RAISED, seconds=60))
    assert second.case_id != first.case_id
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Case)) == 2


async def test_different_rules_on_one_sensor_open_separate_cases(sessions):
    changes = await _apply(
        sessions,
        alarm(AlarmTransition.RAISED, rule_id="burst"),
        alarm(AlarmTransition.RAISED, rule_id="other"),
    )
    assert changes[0].case_id != changes[1].case_id


async def test_case_and_outbox_roll_back_together(sessions):
    async def open_then_fail():
        async with sessions() as session, session.begin():
            event = alarm(AlarmTransition.RAISED)
            await apply_alarm(session=session, alarm=event, sensor=rain_sensor())
            await session.flush()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await open_then_fail()
    async with sessions() as session:
        for table in (Case, CaseHistory, OutboxEvent):
            assert await session.scalar(select(func.count()).select_from(table)) == 0


async def test_cloud_event_body(sessions):
    await _apply(sessions, alarm(AlarmTransition.RAISED, Severity.YELLOW))
    async with sessions() as session:
        event = await session.scalar(select(OutboxEvent))
    assert event is not None
    body = event.body
    assert body["specversion"] == "1.0"
    assert body["id"] == event.id
    assert body["type"] == "gridwatch.case.opened"
    assert body["subject"] == event.case_id
    assert body["time"] == "2026-07-20T08:00:00Z"
    assert body["data"]["sequence"] == 1
    assert body["data"]["severity"] == "yellow"
    assert body["data"]["sensor_id"] == "RG-1"
    assert body["data"]["grid"] == "110101001001001"


async def test_migrations_match_the_models(db_engine):
    def diff(connection):
        context = MigrationContext.configure(connection)
        return compare_metadata(context, Base.metadata)

    async with db_engine.connect() as connection:
        assert await connection.run_sync(diff) == []
