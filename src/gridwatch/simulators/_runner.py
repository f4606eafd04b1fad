"""Running a scenario against a real broker, paced at a replay speed."""

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gridwatch.simulators._feed import SimMessage, iter_feed
from gridwatch.simulators._mqtt import DeviceLink, parse_mqtt_url
from gridwatch.simulators._pacing import Pacer
from gridwatch.simulators._scenario import Scenario

logger = logging.getLogger("gridwatch.simulators")


@dataclass
class RunStats:
    """What a run published: counts per device and topic suffix, and how far it got."""

    device_kinds: dict[str, str] = field(default_factory=dict)
    published: dict[str, Counter[str]] = field(default_factory=dict)
    scenario_s: float = 0.0
    drops: int = 0

    def count(self, sensor_id: str, suffix: str) -> None:
        """Record one published (acknowledged) message."""
        self.published.setdefault(sensor_id, Counter())[suffix] += 1

    @property
    def total(self) -> int:
        """All published messages, statuses included."""
        return sum(sum(counter.values()) for counter in self.published.values())

    def by_kind(self) -> dict[str, Counter[str]]:
        """Counts per device kind (rain_gauge, tilt, …) and topic suffix."""
        result: dict[str, Counter[str]] = {}
        for sensor_id, counter in self.published.items():
            kind = self.device_kinds.get(sensor_id, "unknown")
            result.setdefault(kind, Counter()).update(counter)
        return result

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        """A few human lines: one per device, then the total."""
        lines = [
            f"{sensor_id:<16} {self.device_kinds.get(sensor_id, '?'):<11} "
            + " ".join(f"{suffix}={n}" for suffix, n in sorted(counter.items()))
            for sensor_id, counter in sorted(self.published.items())
        ]
        lines.append(
            f"total {self.total} messages over {self.scenario_s:.1f} s of scenario time"
            + (f", {self.drops} abrupt disconnects" if self.drops else "")
        )
        return "\n".join(lines)


async def run_scenario(
    scenario: Scenario,
    *,
    mqtt_url: str,
    topic_prefix: str = "gridwatch",
    speed: float | None = 1.0,
    duration_s: float | None = None,
    seed: int = 0,
    start: datetime | None = None,
    stats: RunStats | None = None,
) -> RunStats:
    """Publish `scenario` through one MQTT connection per device; return what was published.

    `duration_s` is scenario time (default: the scenario's own; with neither, run until
    cancelled). `speed` is 1, 10, 100 … or None / math.inf for full speed. Timestamps start at
    `start` (default: now). Pass `stats` to read the counts even when the run is cancelled.
    Cancelling stops cleanly: every connected device publishes a retained `offline` first.
    """
    broker = parse_mqtt_url(mqtt_url)
    if not topic_prefix or any(char in topic_prefix for char in "#+"):
        raise ValueError(f"topic_prefix must be non-empty and without wildcards: {topic_prefix!r}")
    pacer = Pacer(speed)
    until = duration_s if duration_s is not None else scenario.duration_s
    origin = start or _now_ms()
    stats = stats if stats is not None else RunStats()
    stats.device_kinds.update({spec.id: spec.kind for spec in scenario.devices})
    links = {
        spec.id: DeviceLink(
            broker=broker, prefix=topic_prefix, sensor_id=spec.id, on_published=stats.count
        )
        for spec in scenario.devices
    }
    logger.info(
        "scenario=%s devices=%d speed=%s until=%s broker=%s",
        scenario.name,
        len(links),
        "full" if pacer.full_speed else f"{speed}x",
        "forever" if until is None else f"{until}s",
        broker,
    )
    try:
        for link in links.values():
            await link.connect()
        pacer.start()
        for item in iter_feed(scenario, seed=seed, until_s=until, start=origin):
            await pacer.wait_until(item.t_s)
            stats.scenario_s = item.t_s
            link = links[item.sensor_id]
            if isinstance(item, SimMessage):
                await link.publish(item.suffix, item.encode())
                logger.debug("sensor=%s t=%.3f %s", item.sensor_id, item.t_s, item.suffix)
            elif item.online:
                await link.connect()
            else:
                await link.drop()
                stats.drops += 1
        if until is not None:
            # The feed may end before the duration does; a run lasts its full duration.
            await pacer.wait_until(until)
            stats.scenario_s = until
    finally:
        for link in links.values():
            await link.close()
    return stats


def _now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
