"""A max window's idle shortcut (the newest sample reaching the lowest level) changes nothing."""

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gridwatch.rules import RuleEngine, load_pack
from tests.rules.helpers import engine_from, run, sensor

LIMIT, CLEAR_RATIO, WINDOW_S = 10.0, 0.5, 600.0
GUST = f"""
rules:
  - id: gust
    title: "{{sensor_id}} {{value}}"
    category: "event:0401"
    condition:
      type: window
      field: v
      aggregate: max
      levels: [{{severity: blue, window: 10m, above: {LIMIT}}}]
      clear_ratio: {CLEAR_RATIO}
"""
# Shares the gust rule's series but also needs sums: a reload swaps in a new series.
RAIN_SUM = """
  - id: total
    title: "{sensor_id} {value}"
    category: "event:0401"
    condition:
      type: window
      field: v
      aggregate: sum
      levels: [{severity: red, window: 10m, above: 1000000}]
"""


def _expected(steps: list[tuple[float, float]]) -> list[tuple[str, str]]:
    # The rule read literally: the max over the window against the level and the clear limit.
    out: list[tuple[str, str]] = []
    active = False
    for index, (t, _) in enumerate(steps):
        peak = max(v for s, v in steps[: index + 1] if s > t - WINDOW_S)
        if peak >= LIMIT:
            out.append(("repeated" if active else "raised", "blue"))
            active = True
        elif active and peak < LIMIT * CLEAR_RATIO:
            out.append(("cleared", "blue"))
            active = False
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(1, 400), st.sampled_from([0.0, 3.0, 6.0, 9.9, 10.0, 14.0])),
        min_size=1,
        max_size=60,
    )
)
def test_max_window_alarms_match_the_rule_read_literally(tmp_path_factory, gaps):
    t, steps = 0.0, []
    for gap, value in gaps:
        t += gap
        steps.append((t, value))
    # Readings carry microsecond timestamps: a sample within a hair of the window's edge may
    # fall either side of it once rounded, which says nothing about the shortcut.
    assume(all(abs(b - a - WINDOW_S) > 1e-3 for a, _ in steps for b, _ in steps if b > a))
    engine = engine_from(tmp_path_factory.mktemp("rules"), GUST)
    assert run(engine, sensor(), [(t, {"v": v}) for t, v in steps]) == _expected(steps)


def test_a_reload_that_replaces_the_series_starts_the_search_again(tmp_path):
    engine = engine_from(tmp_path, GUST)
    gauge = sensor()
    assert run(engine, gauge, [(60.0 * i, {"v": 1.0}) for i in range(20)]) == []
    path = tmp_path / "more.yaml"
    path.write_text(GUST + RAIN_SUM)
    engine.replace_rules(load_pack([path]))
    assert run(engine, gauge, [(1260.0, {"v": 12.0})]) == [("raised", "blue")]


def test_a_restored_engine_still_sees_the_peak(tmp_path):
    before = engine_from(tmp_path, GUST)
    gauge = sensor()
    assert run(before, gauge, [(60.0 * i, {"v": 2.0}) for i in range(5)]) == []
    after = RuleEngine(before.rules)
    after.restore(before.snapshot())
    assert run(after, gauge, [(300.0, {"v": 11.0}), (360.0, {"v": 1.0})]) == [
        ("raised", "blue"),
        ("repeated", "blue"),
    ]
