"""The rules engine across restarts and rule changes, with ticks feeding a real case store."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from gridwatch.cases.models import Case
from gridwatch.domain import AlarmTransition, Channel, Reading
from gridwatch.gateway.alarms import AlarmService
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.rules import load_pack_dir
from gridwatch.service.case_sink import DatabaseCaseSink
from gridwatch.service.rules_runtime import RulesRuntime
from tests.integration.factories import rain_sensor
from tests.telemetry.support import embedded_telemetry

BURST = """
rules:
  - id: burst
    title: "Rain at {sensor_id}: {value} mm"
    category: "event:0401"
    applies_to: {kinds: [rain_gauge]}
    condition: {type: threshold, field: rain_mm, levels: {blue: 2.0, red: 8.0}, clear: 0.5}
"""
OFFLINE = """
rules:
  - id: sensor_offline
    title: "Sensor {sensor_id} offline"
    category: "maintenance:offline"
    maintenance: true
    condition: {type: deadman, intervals: 3, offline_status: true, severity: yellow}
"""


def _reading(value: float, at: datetime) -> Reading:
    return Reading("RG-1", "rain_gauge", Channel.TELEMETRY, at, at, {"rain_mm": value})


@pytest.fixture
async def telemetry(tmp_path):
    async with embedded_telemetry(tmp_path) as running:
        yield running


@pytest.fixture
def rules_dir(tmp_path):
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "burst.yaml").write_text(BURST)
    return directory


def _runtime(rules_dir, tmp_path, sessions=None):
    registry = SensorRegistry([rain_sensor("RG-1")])
    metrics = Metrics()
    sink = (
        DatabaseCaseSink(sessions=sessions, metrics=metrics, on_committed=lambda: None)
        if sessions is not None
        else _refuse
    )
    alarms = AlarmService(
        rules=load_pack_dir(rules_dir), registry=registry, cases=sink, metrics=metrics
    )
    return RulesRuntime(alarms=alarms, rules_dir=rules_dir, state_path=tmp_path / "state.json")


async def _refuse(batch):
    raise AssertionError(f"no case store in this test, got {batch}")


async def test_a_restart_neither_re_raises_nor_forgets_an_active_alarm(rules_dir, tmp_path):
    now = datetime.now(UTC)
    before = _runtime(rules_dir, tmp_path)
    (raised,) = before.engine.evaluate(rain_sensor("RG-1"), _reading(3.0, now))
    assert raised.transition is AlarmTransition.RAISED
    await before.checkpoint()

    after = _runtime(rules_dir, tmp_path)
    after.restore()
    assert after.engine.active_alarms() == before.engine.active_alarms()
    (again,) = after.engine.evaluate(rain_sensor("RG-1"), _reading(3.1, now + timedelta(seconds=5)))
    assert again.transition is AlarmTransition.REPEATED
    (cleared,) = after.engine.evaluate(
        rain_sensor("RG-1"), _reading(0.1, now + timedelta(seconds=10))
    )
    assert cleared.transition is AlarmTransition.CLEARED


async def test_a_corrupt_checkpoint_starts_fresh(rules_dir, tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    runtime = _runtime(rules_dir, tmp_path)
    runtime.restore()
    assert runtime.engine.active_alarms() == {}


async def test_a_broken_rule_file_is_refused_whole_and_the_rules_stay(rules_dir, tmp_path):
    runtime = _runtime(rules_dir, tmp_path)
    (rules_dir / "offline.yaml").write_text(OFFLINE.replace("intervals: 3", "intervals: -3"))
    report = await runtime.reload()
    assert (report.loaded, report.rules) == (False, 1)
    assert "offline.yaml" in (report.error or "")
    assert [rule.id for rule in runtime.engine.rules] == ["burst"]
    (rules_dir / "offline.yaml").write_text(OFFLINE)
    report = await runtime.reload()
    assert (report.loaded, report.rules) == (True, 2)


async def test_ticks_open_a_maintenance_case_for_a_silent_sensor(
    rules_dir, tmp_path, sessions, telemetry
):
    (rules_dir / "offline.yaml").write_text(OFFLINE)
    runtime = _runtime(rules_dir, tmp_path, sessions)
    sensor = rain_sensor("RG-1")  # reports every 5 s
    now = datetime.now(UTC)
    runtime.engine.evaluate(sensor, _reading(0.1, now))
    await runtime.tick(now + timedelta(seconds=10))
    async with sessions() as session:
        assert (await session.scalars(select(Case))).all() == []
    await runtime.tick(now + timedelta(seconds=16))
    async with sessions() as session:
        (case,) = (await session.scalars(select(Case))).all()
    assert (case.rule_id, case.maintenance, case.severity) == ("sensor_offline", True, "yellow")
