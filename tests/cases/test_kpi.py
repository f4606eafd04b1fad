"""The KPI formulas, exhaustively: counts per status add up to the README's per-case formulas."""

import math
import random
import struct
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.cases.kpi import (
    P90,
    StatusCases,
    Tally,
    durations,
    float8_array,
    percentile_cont,
    tally,
    total,
)
from gridwatch.cases.models import CaseStatus

STATUSES = [status.value for status in CaseStatus]
CLOSED = {CaseStatus.CLOSED.value, CaseStatus.EVALUATED.value}
ENDED = {*CLOSED, CaseStatus.CANCELLED.value}
# Durations as PostgreSQL gives them: whole microseconds, from nothing to a year.
SECONDS = st.integers(min_value=0, max_value=366 * 86400 * 10**6).map(lambda us: us / 10**6)


@dataclass(frozen=True)
class Spec:
    """One case, as far as the counts go."""

    status: str
    dispatched: bool
    dispatch_due: bool
    in_time: bool
    due_before_end: bool
    ever_overdue: bool
    reworked: bool
    auto: bool
    reassigned: bool
    overdue: bool


SPECS = st.builds(Spec, status=st.sampled_from(STATUSES), **dict.fromkeys(
    ("dispatched", "dispatch_due", "in_time", "due_before_end", "ever_overdue", "reworked",
     "auto", "reassigned", "overdue"), st.booleans(),
))  # fmt: skip


def per_case(specs):
    """The README's formulas, case by case."""
    closed = [s for s in specs if s.status in CLOSED]
    still_open = [s for s in specs if s.status not in ENDED]
    timed = [s for s in specs if s.dispatched and s.dispatch_due]
    return Tally(
        reported=len(specs),
        dispatched=sum(s.dispatched for s in specs),
        closed=len(closed),
        cancelled=sum(s.status == CaseStatus.CANCELLED.value for s in specs),
        due_to_close=len(closed) + sum(s.due_before_end for s in still_open),
        closed_on_time=sum(not s.ever_overdue for s in closed),
        reworked=sum(s.reworked for s in closed),
        dispatch_timed=len(timed),
        dispatched_in_time=sum(s.in_time for s in timed),
        auto_dispatched=sum(s.auto for s in specs),
        auto_kept=sum(s.auto and not s.reassigned for s in specs),
        overdue=sum(s.overdue for s in still_open),
    )


def counted(specs):
    """What the SQL counts for each status of the cases."""
    return [
        StatusCases(
            status=status,
            cases=len(same),
            dispatched=sum(s.dispatched for s in same),
            due_before_end=sum(s.due_before_end for s in same),
            never_overdue=sum(not s.ever_overdue for s in same),
            reworked=sum(s.reworked for s in same),
            dispatch_timed=sum(s.dispatched and s.dispatch_due for s in same),
            dispatched_in_time=sum(s.dispatched and s.dispatch_due and s.in_time for s in same),
            auto_dispatched=sum(s.auto for s in same),
            auto_kept=sum(s.auto and not s.reassigned for s in same),
            flagged_overdue=sum(s.overdue for s in same),
        )
        for status in {s.status for s in specs}
        for same in [[s for s in specs if s.status == status]]
    ]


@given(st.lists(SPECS, max_size=60))
def test_statuses_add_up_to_the_per_case_formulas(specs):
    assert tally(counted(specs)) == per_case(specs)


def percentile_by_sorting(values, fraction):
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@given(st.lists(SECONDS, min_size=1, max_size=300), st.sampled_from([0.0, 0.5, P90, 1.0]))
def test_percentile_cont_selects_what_a_sort_would(values, fraction):
    assert percentile_cont(values, fraction) == percentile_by_sorting(values, fraction)
    assert percentile_cont(np.array(values), fraction) == percentile_by_sorting(values, fraction)


@given(st.lists(SECONDS, min_size=1, max_size=64), st.randoms(use_true_random=False))
def test_a_groups_durations_are_the_same_in_any_order(values, rng):
    shuffled = list(values)
    rng.shuffle(shuffled)

    assert durations(np.array(shuffled)) == durations(values)


@given(st.lists(SECONDS, max_size=64))
def test_a_few_durations_sum_correctly_rounded(values):
    assert total(values) == math.fsum(values)


@given(st.lists(SECONDS, min_size=1, max_size=2))
def test_a_mean_of_one_or_two_is_the_plain_float_one(values):
    # What SQL's sum gave: a + b is the same either way round.
    assert durations(values).mean == round(sum(values) / len(values), 3)


def test_no_durations_have_no_mean_and_no_p90():
    assert durations([]).model_dump() == {"mean": None, "p90": None}


def array_send(values, *, element_type=701, nulls=0):
    """Bytes as PostgreSQL's array_send writes a one-dimensional float8[]."""
    head = struct.pack(">iiiii", 1, nulls, element_type, len(values), 1)
    return head + b"".join(struct.pack(">id", 8, value) for value in values)


@given(st.lists(st.floats(allow_nan=False), max_size=50))
def test_float8_arrays_decode_from_the_binary_format(values):
    assert float8_array(array_send(values)).tolist() == values


@pytest.mark.parametrize("data", [None, struct.pack(">iii", 0, 0, 701)])
def test_null_and_empty_arrays_are_no_values(data):
    assert float8_array(data).tolist() == []


@pytest.mark.parametrize(
    "data",
    [
        array_send([1.0], element_type=700),
        array_send([1.0], nulls=1),
        array_send([1.0, 2.0])[:-4],
        struct.pack(">iiiiiii", 2, 0, 701, 1, 1, 1, 1) + struct.pack(">id", 8, 1.0),
    ],
    ids=["float4", "with nulls", "cut short", "two dimensions"],
)
def test_other_arrays_are_refused(data):
    with pytest.raises(ValueError, match="not a float8"):
        float8_array(data)


def test_a_large_sum_is_pairwise_a_few_ulps_from_exact():
    rng = random.Random(7)
    values = [rng.uniform(0, 86400) for _ in range(5000)]

    assert total(values) == pytest.approx(math.fsum(values), rel=1e-14)
