"""Regenerate the example feeds in src/gridwatch/rules/feeds/ from simulator scenarios.

    .venv/bin/python -m benchmarks.make_feeds

Each feed is the pure simulator output (no broker) of a shipped scenario, as JSON lines of
readings, plus `sensors.yaml` registering the devices. Deterministic: same seed, same bytes.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from gridwatch.domain import Channel, Reading
from gridwatch.rules.feeds import write_feed_line
from gridwatch.simulators import (
    DEFAULT_START,
    Scenario,
    SimMessage,
    TiltSpec,
    iter_feed,
    load_scenario,
    parse_scenario,
)

FEEDS_DIR = Path(__file__).resolve().parents[1] / "src" / "gridwatch" / "rules" / "feeds"
GRID = "110101001001001"

# A sensor that is noisy but sound: a billboard whose inclinometer jitters ten times more than
# the leaning one's, in a fresh breeze that sways it (gusts stay under gale force 7), and a
# drizzle gauge. Single readings cross the first deviation level; nothing lasts.
NOISY_QUIET = """
name: noisy_quiet
duration_s: 21600
devices:
  - {id: BB-401, kind: tilt, interval_s: 60, baseline_x_deg: 0.05, baseline_y_deg: 0.02,
     noise_deg: 0.04, wind_ms: 7, turbulence: 0.2, sway_deg_per_ms: 0.003, battery_v: 3.6}
  - {id: RG-401, kind: rain_gauge, interval_s: 300, tip_mm: 0.2, jitter: 0.5, rate_mm_h: 2}
"""

SCENARIOS = ("red_rainstorm", "leaning_billboard", "entrapment", "noisy_threshold")


def readings(scenario: Scenario, *, seed: int = 0) -> Iterator[Reading]:
    """The scenario's messages and connection changes as readings."""
    kinds = {spec.id: spec.kind for spec in scenario.devices}
    origin = scenario.start or DEFAULT_START
    for item in iter_feed(scenario, seed=seed):
        at = origin + timedelta(seconds=item.t_s)
        if isinstance(item, SimMessage):
            values = {k: v for k, v in item.payload.items() if k != "ts"}
            ts = datetime.fromisoformat(item.payload["ts"]).astimezone(UTC)
            channel = Channel(item.suffix)
        else:
            values, ts, channel = (
                {"status": "online" if item.online else "offline"},
                at,
                Channel.STATUS,
            )
        yield Reading(item.sensor_id, kinds[item.sensor_id], channel, ts, at, values)


def sensors_of(scenarios: list[Scenario]) -> list[dict[str, object]]:
    """Sensor registrations for the scenarios' devices (tilt baselines as calibration)."""
    out: list[dict[str, object]] = []
    for scenario in scenarios:
        for spec in scenario.devices:
            sensor: dict[str, object] = {
                "id": spec.id,
                "kind": spec.kind,
                "grid": GRID,
                "interval_s": spec.interval_s,
            }
            if isinstance(spec, TiltSpec):
                sensor["calibration"] = {
                    "baseline_x_deg": spec.baseline_x_deg,
                    "baseline_y_deg": spec.baseline_y_deg,
                }
            out.append(sensor)
    return out


def main() -> None:
    """Write every feed and the sensors file."""
    scenarios = [load_scenario(name) for name in SCENARIOS]
    scenarios.append(parse_scenario(NOISY_QUIET, name="noisy_quiet"))
    FEEDS_DIR.mkdir(parents=True, exist_ok=True)
    for scenario in scenarios:
        path = FEEDS_DIR / f"{scenario.name}.jsonl"
        lines = [write_feed_line(reading) for reading in readings(scenario)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{path.name}: {len(lines)} readings, {path.stat().st_size / 1024:.0f} KiB")
    header = "# Devices of the example feeds (written by benchmarks/make_feeds.py).\n"
    body = yaml.safe_dump({"sensors": sensors_of(scenarios)}, sort_keys=False)
    (FEEDS_DIR / "sensors.yaml").write_text(header + body, encoding="utf-8")


if __name__ == "__main__":
    main()
