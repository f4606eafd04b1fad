"""Offline tooling for rule authors: check rule files, replay a feed, print the alarms.

These are the pure functions behind `gridwatch rules check` and `gridwatch rules test`.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gridwatch.domain import AlarmEvent, AlarmTransition, Sensor
from gridwatch.rules.engine import RuleEngine
from gridwatch.rules.feeds import RECORDING_START, read_feed, with_kind
from gridwatch.rules.loader import RuleFileError, RulePack, load_pack
from gridwatch.rules.models import Rule


@dataclass(frozen=True, slots=True)
class FileCheck:
    """One rule file's verdict: how many rules it holds, or the error that rejects it."""

    path: Path
    rules: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """The result of checking a set of rule files together."""

    files: tuple[FileCheck, ...]
    # An error that only shows across files (duplicate ids, inhibition of unknown rules).
    error: str | None = None
    pack: RulePack | None = None

    @property
    def ok(self) -> bool:
        """True when every file, and the files together, are valid."""
        return self.error is None and all(item.error is None for item in self.files)

    def lines(self) -> list[str]:
        """The report as text lines, one per file and one for the set."""
        out = [
            f"{item.path}: " + (f"ERROR {item.error}" if item.error else f"ok, {item.rules} rules")
            for item in self.files
        ]
        if self.error:
            out.append(f"together: ERROR {self.error}")
        return out


def check_rule_files(paths: Iterable[Path]) -> RuleCheck:
    """Validate each file alone, then all of them together."""
    paths = list(paths)
    files = []
    for path in paths:
        try:
            files.append(FileCheck(path, len(load_pack([path], check_references=False).rules)))
        except RuleFileError as err:
            files.append(FileCheck(path, 0, str(err)))
    if any(item.error for item in files):
        return RuleCheck(tuple(files))
    try:
        pack = load_pack(paths)
    except RuleFileError as err:
        return RuleCheck(tuple(files), error=str(err))
    return RuleCheck(tuple(files), pack=pack)


@dataclass(slots=True)
class ReplayResult:
    """Alarms a feed caused, and what could not be replayed."""

    alarms: list[AlarmEvent] = field(default_factory=list)
    readings: int = 0
    unknown_sensors: set[str] = field(default_factory=set)


def replay_feed(
    rules: Sequence[Rule] | RulePack,
    sensors: Mapping[str, Sensor] | Iterable[Sensor],
    feed_path: Path,
    *,
    tick_s: float = 1.0,
    start: datetime = RECORDING_START,
) -> list[AlarmEvent]:
    """Every alarm event the feed causes, in order, with ticks every `tick_s` of feed time."""
    return replay(rules, sensors, feed_path, tick_s=tick_s, start=start).alarms


def replay(
    rules: Sequence[Rule] | RulePack,
    sensors: Mapping[str, Sensor] | Iterable[Sensor],
    feed_path: Path,
    *,
    tick_s: float = 1.0,
    start: datetime = RECORDING_START,
) -> ReplayResult:
    """Replay a feed through a fresh engine; readings of unknown sensors are counted, skipped."""
    by_id = dict(sensors) if isinstance(sensors, Mapping) else {s.id: s for s in sensors}
    engine = RuleEngine(rules)
    result = ReplayResult()
    step = timedelta(seconds=tick_s)
    next_tick: datetime | None = None
    last: datetime | None = None
    for item in read_feed(feed_path, start=start):
        reading = with_kind(item.reading, by_id)
        if reading is None:
            result.unknown_sensors.add(item.reading.sensor_id)
            continue
        # Time passes up to (not including) this reading's arrival: silence is judged first.
        arrived = reading.received_at
        next_tick = next_tick or arrived
        while next_tick < arrived:
            result.alarms += engine.tick(next_tick)
            next_tick += step
        result.alarms += engine.evaluate(by_id[reading.sensor_id], reading)
        result.readings += 1
        last = arrived if last is None else max(last, arrived)
    if last is not None:
        result.alarms += engine.tick(last)
    return result


def format_alarms(alarms: Iterable[AlarmEvent], *, repeats: bool = False) -> str:
    """One line per alarm event with its time; repeats left out unless asked for."""
    lines = []
    for alarm in alarms:
        if alarm.transition is AlarmTransition.REPEATED and not repeats:
            continue
        at = alarm.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        kind = "maint" if alarm.maintenance else "city "
        lines.append(
            f"{at}  {alarm.transition.value:<9} {alarm.severity.value:<6} {kind} "
            f"{alarm.sensor_id}/{alarm.rule_id}  {alarm.why or alarm.title}"
        )
    return "\n".join(lines)
