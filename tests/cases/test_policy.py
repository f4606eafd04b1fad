"""The case policy (pure): shipped time limits, people's deadlines, escalation times, loading."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gridwatch.cases.policy import REOPEN_WITHIN, load_case_policy, shipped_policy
from gridwatch.cases.routing import DEMO_ROUTING_PATH, RoutingError, RoutingInForce
from gridwatch.domain.calendar import CalendarError
from gridwatch.domain.deadlines import Clock, PolicyError, Stage
from gridwatch.domain.severity import Severity
from tests.cases.timing_support import BEIJING, COMMUNITY, DISTRICT, ENTRAPMENT, GRID, STREET

POLICY = shipped_policy()
T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("stage", "limit"),
    [(Stage.DISPATCH, 5 * MINUTE), (Stage.HANDLE, 30 * MINUTE), (Stage.VERIFY, 120 * MINUTE)],
)
def test_a_red_elevator_entrapment_is_dispatched_in_5_minutes_and_reached_in_30(stage, limit):
    found = POLICY.deadline(category=ENTRAPMENT, severity=Severity.RED, stage=stage, start=T0)
    assert found is not None
    assert (found.clock, found.due) == (Clock.WALL, T0 + limit)


@pytest.mark.parametrize(
    ("stage", "due"),
    [
        # 16:00-17:30 on the eve (1.5 h), then 1-7 October off: 2.5 h more on the 8th.
        (Stage.DISPATCH, datetime(2026, 10, 8, 11, 0, tzinfo=BEIJING)),
        # 1.5 h, then 7.5 h on the 8th and 7 h on the 9th.
        (Stage.HANDLE, datetime(2026, 10, 9, 17, 0, tzinfo=BEIJING)),
    ],
)
def test_a_maintenance_case_on_the_national_day_eve_waits_out_the_holiday(stage, due):
    start = datetime(2026, 9, 30, 16, 0, tzinfo=BEIJING)
    found = POLICY.deadline(
        category="maintenance:offline", severity=Severity.YELLOW, stage=stage, start=start
    )
    assert found is not None
    assert (found.clock, found.due) == (Clock.WORKING, due.astimezone(UTC))


def test_a_deadline_given_by_a_person_warns_in_proportion_to_the_time_it_allows():
    due = T0 + timedelta(hours=10)
    found = POLICY.deadline(
        category="event:0401", severity=Severity.ORANGE, stage=Stage.HANDLE, start=T0, due=due
    )
    assert found is not None
    # The shipped warning starts when a fifth of the time is left.
    assert (found.due, found.allowed, found.warn_within) == (due, 10 * 60 * MINUTE, 120 * MINUTE)


def test_the_policy_deadline_is_itself_when_a_person_gives_the_same_one():
    own = POLICY.deadline(category=ENTRAPMENT, severity=Severity.RED, stage=Stage.HANDLE, start=T0)
    assert own is not None
    same = POLICY.deadline(
        category=ENTRAPMENT, severity=Severity.RED, stage=Stage.HANDLE, start=T0, due=own.due
    )
    assert same == own


@pytest.mark.parametrize(("level", "minutes"), [(1, 60), (2, 90), (3, 120)])
def test_each_supervision_level_waits_one_more_stage_limit(level, minutes):
    late = POLICY.deadline(category=ENTRAPMENT, severity=Severity.RED, stage=Stage.HANDLE, start=T0)
    assert late is not None
    assert POLICY.escalates_at(late, level) == T0 + minutes * MINUTE


def test_working_time_escalation_skips_the_holiday():
    start = datetime(2026, 9, 30, 16, 0, tzinfo=BEIJING)
    late = POLICY.deadline(
        category="maintenance:offline", severity=Severity.BLUE, stage=Stage.DISPATCH, start=start
    )
    assert late is not None
    # Due 8 Oct 11:00; four more working hours end at 16:30 the same day.
    expected = datetime(2026, 10, 8, 16, 30, tzinfo=BEIJING).astimezone(UTC)
    assert POLICY.escalates_at(late, 1) == expected


@pytest.mark.parametrize(
    ("grid", "levels"),
    [(GRID, (COMMUNITY, STREET, DISTRICT)), (COMMUNITY, (STREET, DISTRICT)), (None, ())],
)
def test_supervision_goes_up_the_grid_to_the_district(grid, levels):
    assert POLICY.supervisors(grid) == levels


def test_no_routing_table_routes_nothing():
    assert POLICY.route(category="event:0401", grid=GRID, owner=None) is None
    assert POLICY.reopen_within == REOPEN_WITHIN


def test_the_demo_routing_file_loads_and_routes():
    policy = load_case_policy(routing_file=DEMO_ROUTING_PATH, reopen_within=timedelta(hours=2))
    found = policy.route(category="event:0401", grid=GRID, owner=None)
    assert found is not None
    assert "flood control" in found.unit
    assert policy.reopen_within == timedelta(hours=2)
    unrouted = replace(policy, routing=RoutingInForce())
    assert unrouted.route(category="event:0401", grid=GRID, owner=None) is None


@pytest.mark.parametrize(
    ("option", "text", "error", "names"),
    [
        ("deadlines_file", "rules:\n  - category: '*'\n    handle: soon\n", PolicyError,
         "rules.0.handle"),
        ("calendar_file", "hours: ['17:00-08:00']\n", CalendarError, "hours.0"),
        ("routing_file", "routes:\n  - category: 'event:0401'\n", RoutingError, "unit"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_naming_the_file_and_the_field(
    tmp_path: Path, option, text, error, names
):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    files: dict[str, Any] = {option: path}
    with pytest.raises(error) as caught:
        load_case_policy(**files)
    assert str(path) in str(caught.value)
    assert names in str(caught.value)
