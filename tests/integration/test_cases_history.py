"""Property: whatever is attempted on a case, its recorded history replays to its state."""

import asyncio
import contextlib
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from gridwatch.cases import lifecycle, transitions
from gridwatch.cases.errors import InvalidRequestError
from gridwatch.cases.lifecycle import Action, TransitionRefusedError
from gridwatch.cases.models import Case, CaseHistory, CaseStatus, OutboxEvent
from gridwatch.cases.requests import TransitionRequest
from gridwatch.cases.service import apply_alarm, get_case
from gridwatch.domain import AlarmTransition, Severity
from gridwatch.gateway.db import create_engine, migrate, session_factory
from tests.cases.support import ADMIN, request
from tests.integration.factories import T0, alarm, rain_sensor

ALARMS = [AlarmTransition.RAISED, AlarmTransition.CLEARED]
# Mostly actions the loop allows now, so examples reach its far end; the rest anything.
kinds = st.sampled_from(["allowed"] * 5 + ["any"] * 2 + ["alarm"] * 2)


async def _attempt(sessions, case_id, data, minute):
    at = T0 + timedelta(minutes=minute)
    async with sessions() as session, session.begin():
        kind = data.draw(kinds)
        if kind == "alarm":
            what, severity = (
                data.draw(st.sampled_from(ALARMS)),
                data.draw(st.sampled_from(Severity)),
            )
            event = alarm(what, severity, seconds=minute * 60)
            await apply_alarm(session=session, alarm=event, sensor=rain_sensor())
            return
        case = await get_case(session=session, case_id=case_id)
        assert case is not None
        choices = lifecycle.allowed_actions(CaseStatus(case.status)) if kind == "allowed" else ()
        action = data.draw(st.sampled_from(choices or tuple(Action)))
        # An override (with its note) lets a verify through while the alarm is active.
        override = data.draw(st.booleans()) and action is Action.VERIFY
        body = request(action) | ({"override": True, "note": "seen"} if override else {})
        with contextlib.suppress(InvalidRequestError, TransitionRefusedError):
            await transitions.transition(
                session=session,
                case_id=case_id,
                versions=frozenset({case.version}),
                request=TransitionRequest.model_validate(body),
                actor=ADMIN,
                at=at,
            )


async def _run(database_url, data):
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        # Examples share the database: each starts from no cases, whatever the last one left.
        async with sessions() as session, session.begin():
            for table in (OutboxEvent, CaseHistory, Case):
                await session.execute(delete(table))
        async with sessions() as session, session.begin():
            opened = await apply_alarm(
                session=session, alarm=alarm(AlarmTransition.RAISED), sensor=rain_sensor()
            )
        for minute in range(1, data.draw(st.integers(0, 24)) + 1):
            await _attempt(sessions, opened.case_id, data, minute)
        async with sessions() as session:
            cases = (await session.scalars(select(Case).options(selectinload(Case.history)))).all()
            sequences = {
                case.id: list(
                    await session.scalars(
                        select(OutboxEvent.sequence)
                        .where(OutboxEvent.case_id == case.id)
                        .order_by(OutboxEvent.sequence)
                    )
                )
                for case in cases
            }
    finally:
        await engine.dispose()
    return cases, sequences


def test_the_history_replays_to_the_state(database_url):
    @settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def check(data):
        cases, sequences = asyncio.run(_run(database_url, data))
        for case in cases:
            history = case.history
            assert lifecycle.derive_state([h.action for h in history]) == case.status
            # Each entry starts where the one before it ended.
            assert [h.from_status for h in history[1:]] == [h.to_status for h in history[:-1]]
            assert sequences[case.id] == list(range(1, case.last_sequence + 1))
            assert case.open_fingerprint == (
                case.case_key if lifecycle.is_open(case.status) else None
            )

    check()
