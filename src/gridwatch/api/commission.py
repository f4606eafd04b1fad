"""Commissioning: prove a new device end to end before it goes live.

The installer asks the device to send a reading; the report shows whether it arrived, how it
decoded (or why it was set aside), and which rules it would fire once the sensor is active. A
polled (Modbus) device is read once at the call, and the report adds its raw registers.
"""

import asyncio
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.api.context import ApiContext
from gridwatch.api.readings import ReadingRead
from gridwatch.domain import Reading, Sensor, SensorStatus
from gridwatch.registry import service
from gridwatch.registry.problems import ConflictError, FieldProblem

POLL_S = 0.1


class SetAside(BaseModel):
    """A message from this device that was not accepted."""

    received_at: datetime
    reason: str
    detail: str


class RuleOutcome(BaseModel):
    """What one rule would do with the reading if the sensor were active."""

    rule_id: str
    fires: bool
    severity: str | None = None
    title: str | None = None


class CommissionReport(BaseModel):
    """Green when a reading arrived, decoded, and nothing from the device was set aside since."""

    sensor_id: str
    status: SensorStatus
    green: bool
    reading: ReadingRead | None
    set_aside: list[SetAside]
    rules: list[RuleOutcome]
    registers: dict[str, list[int]] | None = Field(
        default=None,
        description="A polled device's raw answers by read (`input:0+4`: table, first, count).",
    )
    poll_error: str | None = Field(default=None, description="Why the poll produced nothing.")


async def commission(
    *, context: ApiContext, session: AsyncSession, sensor_id: str, wait_s: float
) -> CommissionReport:
    """Move a draft sensor to commissioning, wait for a reading, and report."""
    started = datetime.now(UTC)
    async with session.begin():
        row = await service.get_sensor(session=session, sensor_id=sensor_id)
        if row.status == SensorStatus.RETIRED:
            raise ConflictError([FieldProblem("status", "a retired sensor cannot be commissioned")])
        if row.status == SensorStatus.DRAFT:
            references = await service.load_references(
                session=session,
                profiles={name: profile.kind for name, profile in context.profiles.items()},
            )
            row = await service.update_sensor(
                session=session,
                sensor_id=sensor_id,
                changes={"status": SensorStatus.COMMISSIONING.value},
                references=references,
            )
        sensor = row.to_sensor()
    await context.sensors_changed()
    probe = await context.probe_device(sensor) if context.probe_device is not None else None
    if probe is not None:
        # The poll went through the pipeline: its reading, if any, is already the newest.
        wait_s = 0 if probe.error else min(wait_s, 1.0)
    reading = await _wait_for_reading(context, sensor_id, since=started, wait_s=wait_s)
    set_aside = [
        SetAside(received_at=r.received_at, reason=r.reason.value, detail=r.detail)
        for r in context.rejects.recent
        if r.sensor_id == sensor_id and (reading is None or r.received_at >= reading.received_at)
    ]
    return CommissionReport(
        sensor_id=sensor_id,
        status=sensor.status,
        green=reading is not None and not set_aside,
        reading=ReadingRead.of(reading) if reading else None,
        set_aside=set_aside,
        rules=_dry_run(context, sensor, reading),
        registers=probe.registers if probe is not None else None,
        poll_error=probe.error if probe is not None else None,
    )


async def _wait_for_reading(
    context: ApiContext, sensor_id: str, *, since: datetime, wait_s: float
) -> Reading | None:
    # With wait_s > 0 only a reading that arrives after the request counts: the installer
    # has just pressed "send now". Without waiting, the newest reading is reported.
    for _ in range(int(wait_s / POLL_S) + 1):
        newest = context.latest.newest(sensor_id)
        if newest is not None and (wait_s == 0 or newest.received_at >= since):
            return newest
        if wait_s == 0:
            return None
        await asyncio.sleep(POLL_S)
    return None


def _dry_run(context: ApiContext, sensor: Sensor, reading: Reading | None) -> list[RuleOutcome]:
    rules = [rule for rule in context.alarms.engine.rules if rule.applies_to.matches(sensor)]
    if reading is None:
        return [RuleOutcome(rule_id=rule.id, fires=False) for rule in rules]
    fired = {event.rule_id: event for event in context.alarms.dry_run(sensor, reading)}
    return [
        RuleOutcome(
            rule_id=rule.id,
            fires=rule.id in fired,
            severity=fired[rule.id].severity.value if rule.id in fired else None,
            title=fired[rule.id].title if rule.id in fired else None,
        )
        for rule in rules
    ]
