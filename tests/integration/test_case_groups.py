"""The shipped red rainstorm feed through the rules and the case store: one case per gauge."""

from pathlib import Path

from sqlalchemy import select

from gridwatch.cases.models import Case
from gridwatch.cases.service import apply_alarm
from gridwatch.rules import DEFAULT_PACK_DIR, load_pack_dir
from gridwatch.rules.feeds import load_sensors
from gridwatch.rules.replay import replay

FEEDS = Path(__file__).resolve().parents[2] / "src" / "gridwatch" / "rules" / "feeds"


async def test_one_storm_at_one_gauge_is_one_case_that_names_every_signal(sessions):
    sensors = load_sensors(FEEDS / "sensors.yaml")
    alarms = replay(load_pack_dir(DEFAULT_PACK_DIR), sensors, FEEDS / "red_rainstorm.jsonl").alarms
    for alarm in alarms:
        async with sessions() as session, session.begin():
            await apply_alarm(session=session, alarm=alarm, sensor=sensors[alarm.sensor_id])
    async with sessions() as session:
        cases = (await session.scalars(select(Case).where(Case.maintenance.is_(False)))).all()
    assert sorted((c.sensor_id, c.severity, c.case_key) for c in cases) == [
        ("RG-101", "red", "RG-101/rainstorm"),
        ("RG-102", "red", "RG-102/rainstorm"),
    ]
    for case in cases:
        assert set(case.evidence["rules"]) == {"short_heavy_rain", "rainstorm"}
        # A live gauge's case is on the duty officers' board, not a test case.
        assert case.drill is False
        assert case.alarm_active  # the rainstorm signal still holds when the feed ends
