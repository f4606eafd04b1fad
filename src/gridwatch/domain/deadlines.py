"""Time limits (时限) per case category and severity for dispatch, handling and verification."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from gridwatch.domain.calendar import WorkCalendar
from gridwatch.domain.datafiles import DataFileError, read_document
from gridwatch.domain.severity import Severity

DEFAULT_POLICY_PATH = Path(__file__).parent / "calendars" / "deadline-policy.yaml"
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


class Stage(StrEnum):
    """A timed step of a case: dispatched (派遣), handled on site (处置), verified (核查)."""

    DISPATCH = "dispatch"
    HANDLE = "handle"
    VERIFY = "verify"


class Clock(StrEnum):
    """How a time limit runs: around the clock, or only in a calendar's working hours."""

    WALL = "wall"
    WORKING = "working"


class DeadlineStatus(StrEnum):
    """Where a case stands against one of its deadlines."""

    ON_TIME = "on_time"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"


class PolicyError(DataFileError):
    """A deadline policy that cannot be used, naming the field (and the file) at fault."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DueSoon:
    """A deadline is due soon once less than a `fraction` of its time, or a `margin`, is left."""

    fraction: float | None = None
    margin: timedelta | None = None

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.margin is None):
            raise PolicyError("give exactly one of fraction and margin", field="due_soon")
        if self.fraction is not None and not 0 < self.fraction < 1:
            raise PolicyError(f"{self.fraction} is not between 0 and 1", field="due_soon.fraction")
        if self.margin is not None and self.margin <= timedelta(0):
            raise PolicyError(f"{self.margin} is not positive", field="due_soon.margin")

    def window(self, allowed: timedelta) -> timedelta:
        """How long before the deadline the warning starts, for a limit of `allowed`."""
        if self.margin is not None:
            return self.margin
        assert self.fraction is not None
        return allowed * self.fraction


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlineRule:
    """Time limits for the cases a category pattern and a severity (None: any) match."""

    category: str = "*"
    severity: Severity | None = None
    clock: Clock = Clock.WALL
    dispatch: timedelta | None = None
    handle: timedelta | None = None
    verify: timedelta | None = None
    due_soon: DueSoon | None = None  # None: the policy's

    def __post_init__(self) -> None:
        if not self.category or "*" in self.category[:-1]:
            raise PolicyError(
                f"{self.category!r}: '*' may only end the pattern (event:04*) or be all of it",
                field="category",
            )
        for stage in Stage:
            limit = self.limit(stage)
            if limit is not None and limit <= timedelta(0):
                raise PolicyError(f"{limit} is not positive", field=stage.value)

    def matches(self, category: str, severity: Severity) -> bool:
        """Whether this rule applies to a case of `category` and `severity`."""
        if self.severity is not None and self.severity != severity:
            return False
        if self.category.endswith("*"):
            return category.startswith(self.category[:-1])
        return category == self.category

    def limit(self, stage: Stage) -> timedelta | None:
        """The time allowed for `stage`, None when the stage has no limit."""
        limit: timedelta | None = getattr(self, stage.value)
        return limit


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlinePolicy:
    """Deadline rules in order (the first match wins) and the default due-soon warning."""

    rules: tuple[DeadlineRule, ...]
    due_soon: DueSoon = DueSoon(fraction=0.2)

    def rule_for(self, category: str, severity: Severity) -> DeadlineRule | None:
        """The first rule matching the case, None when no rule does."""
        return next((rule for rule in self.rules if rule.matches(category, severity)), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deadline:
    """One stage's deadline: when it started, when it is due, and when the warning starts."""

    stage: Stage
    clock: Clock
    start: datetime
    due: datetime
    allowed: timedelta
    warn_within: timedelta
    calendar: WorkCalendar

    def remaining(self, now: datetime) -> timedelta:
        """Time left on the deadline's own clock, negative once past due."""
        if self.clock is Clock.WORKING:
            return self.calendar.working_time_between(now, self.due)
        return self.due - _as_utc(now)


def deadline(
    *,
    policy: DeadlinePolicy,
    calendar: WorkCalendar,
    category: str,
    severity: Severity,
    stage: Stage,
    start: datetime,
) -> Deadline | None:
    """The deadline of a case's `stage` begun at `start`, None when the policy sets none."""
    rule = policy.rule_for(category, severity)
    allowed = None if rule is None else rule.limit(stage)
    if rule is None or allowed is None:
        return None
    begun = _as_utc(start)
    if rule.clock is Clock.WORKING:
        due = calendar.add_working_time(begun, allowed)
    else:
        due = begun + allowed
    warning = policy.due_soon if rule.due_soon is None else rule.due_soon
    return Deadline(
        stage=stage,
        clock=rule.clock,
        start=begun,
        due=due,
        allowed=allowed,
        warn_within=warning.window(allowed),
        calendar=calendar,
    )


def due_at(
    *,
    policy: DeadlinePolicy,
    calendar: WorkCalendar,
    category: str,
    severity: Severity,
    stage: Stage,
    start: datetime,
) -> datetime | None:
    """The UTC instant a case's `stage` begun at `start` is due, None when it has no limit."""
    found = deadline(
        policy=policy,
        calendar=calendar,
        category=category,
        severity=severity,
        stage=stage,
        start=start,
    )
    return None if found is None else found.due


def status(deadline: Deadline, now: datetime) -> DeadlineStatus:
    """On time, due soon (less than the warning window left) or overdue (past due) at `now`."""
    if _as_utc(now) > deadline.due:
        return DeadlineStatus.OVERDUE
    if deadline.remaining(now) < deadline.warn_within:
        return DeadlineStatus.DUE_SOON
    return DeadlineStatus.ON_TIME


def due_soon(deadline: Deadline, now: datetime) -> bool:
    """Whether less than the warning window is left but the deadline has not passed."""
    return status(deadline, now) is DeadlineStatus.DUE_SOON


def overdue(deadline: Deadline, now: datetime) -> bool:
    """Whether `now` is past the deadline (督办 starts)."""
    return status(deadline, now) is DeadlineStatus.OVERDUE


def parse_duration(text: str) -> timedelta:
    """A duration from '90s', '5m', '1.5h' or '2d'; the unit is required."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration (use e.g. 5m, 30m, 16h, 2d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _as_utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t.isoformat()} has no time zone; pass an aware datetime")
    return t.astimezone(UTC)


class _DueSoonFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fraction: float | None = None
    margin: str | None = None


class _RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str
    severity: Literal["blue", "yellow", "orange", "red", "any"] = "any"
    clock: Clock = Clock.WALL
    dispatch: str | None = None
    handle: str | None = None
    verify: str | None = None
    due_soon: _DueSoonFile | None = None


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    due_soon: _DueSoonFile = _DueSoonFile(fraction=0.2)
    rules: list[_RuleFile]


def load_policy(path: Path = DEFAULT_POLICY_PATH) -> DeadlinePolicy:
    """The deadline policy a YAML file describes; errors name the file and the field."""
    raw = read_document(path, _PolicyFile, error=PolicyError, shape="a mapping with a 'rules' list")
    rules: list[DeadlineRule] = []
    for index, raw_rule in enumerate(raw.rules):
        try:
            rules.append(_build_rule(raw_rule))
        except PolicyError as err:
            raise PolicyError(err.reason, field=f"rules.{index}.{err.field}", path=path) from err
    try:
        default = _build_due_soon(raw.due_soon)
    except PolicyError as err:
        raise PolicyError(err.reason, field=err.field, path=path) from err
    return DeadlinePolicy(rules=tuple(rules), due_soon=default)


def _build_rule(raw: _RuleFile) -> DeadlineRule:
    limits: dict[Stage, timedelta | None] = {}
    for stage in Stage:
        text: str | None = getattr(raw, stage.value)
        if text is not None and raw.clock is Clock.WORKING and text.strip().endswith("d"):
            # A "day" of working time would silently mean 24 working hours, about three days.
            raise PolicyError(
                f"{text!r}: give working time in hours (a day of the cn calendar is 7.5h)",
                field=stage.value,
            )
        limits[stage] = None if text is None else _duration(text, field=stage.value)
    return DeadlineRule(
        category=raw.category,
        severity=None if raw.severity == "any" else Severity(raw.severity),
        clock=raw.clock,
        dispatch=limits[Stage.DISPATCH],
        handle=limits[Stage.HANDLE],
        verify=limits[Stage.VERIFY],
        due_soon=None if raw.due_soon is None else _build_due_soon(raw.due_soon),
    )


def _build_due_soon(raw: _DueSoonFile) -> DueSoon:
    margin = None if raw.margin is None else _duration(raw.margin, field="due_soon.margin")
    return DueSoon(fraction=raw.fraction, margin=margin)


def _duration(text: str, *, field: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise PolicyError(str(err), field=field) from err
