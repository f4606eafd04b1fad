"""The case policy: time limits on a calendar, the routing table and the reopen window.

apply_alarm, the transitions and supervision all ask one `CasePolicy`; none of them keeps a
rule of its own about when a case is due, which unit takes it, or how far up a late case goes.
Pure: no I/O beyond reading its files once, when it is built. The routing table is the one
part that changes while the service runs (through the API, or another process): the policy
holds it in a `RoutingInForce`, swapped whole, so every holder of the policy sees the change.
"""

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from gridwatch.cases.routing import Route, RoutingInForce, load_routing, route
from gridwatch.domain.calendar import DEFAULT_CALENDAR_PATH, WorkCalendar, load_calendar
from gridwatch.domain.deadlines import (
    DEFAULT_POLICY_PATH,
    Clock,
    Deadline,
    DeadlinePolicy,
    Stage,
    deadline,
    load_policy,
)
from gridwatch.domain.severity import Severity
from gridwatch.registry.grid import parse_grid_code

# A case closed less than this long before its alarm comes back is reopened, not duplicated.
REOPEN_WITHIN = timedelta(hours=24)


@dataclass(frozen=True, slots=True, kw_only=True)
class CasePolicy:
    """How cases are timed, routed and reopened; built once by the service from its settings."""

    deadlines: DeadlinePolicy
    calendar: WorkCalendar
    # The table auto-dispatch routes by (none: every case waits for an officer). Copies made
    # with dataclasses.replace share it, so a change reaches every one of them.
    routing: RoutingInForce = field(default_factory=RoutingInForce)
    reopen_within: timedelta = REOPEN_WITHIN

    def deadline(
        self,
        *,
        category: str,
        severity: Severity,
        stage: Stage,
        start: datetime,
        due: datetime | None = None,
    ) -> Deadline | None:
        """The `stage` deadline begun at `start`: the policy's, or `due` when a person set one.

        A deadline a person set runs on the clock the policy gives the case (wall clock when
        no rule matches), and warns like the policy's do, in proportion to the time it allows.
        """
        found = deadline(
            policy=self.deadlines,
            calendar=self.calendar,
            category=category,
            severity=severity,
            stage=stage,
            start=start,
        )
        if due is None or (found is not None and found.due == due):
            return found
        rule = self.deadlines.rule_for(category, severity)
        clock = Clock.WALL if rule is None else rule.clock
        if clock is Clock.WORKING:
            allowed = self.calendar.working_time_between(start, due)
        else:
            allowed = due - start
        warning = self.deadlines.due_soon
        if rule is not None and rule.due_soon is not None:
            warning = rule.due_soon
        return Deadline(
            stage=stage,
            clock=clock,
            start=start,
            due=due,
            allowed=allowed,
            warn_within=warning.window(allowed) if allowed > timedelta(0) else timedelta(0),
            calendar=self.calendar,
        )

    def route(self, *, category: str, grid: str | None, owner: str | None) -> Route | None:
        """The unit a new or reopened case goes to without an officer, None to wait for one."""
        table = self.routing.table  # read once: the table may be swapped meanwhile
        if table is None:
            return None
        return route(table, category=category, grid=grid, owner=owner)

    def supervisors(self, grid: str | None) -> tuple[str, ...]:
        """The codes an overdue case is escalated to, in order (community, street, district)."""
        return () if grid is None else parse_grid_code(grid).ancestors

    def escalates_at(self, late: Deadline, level: int) -> datetime:
        """When a case overdue on `late` and supervised at `level` (1 and up) goes one level up.

        Each level gets one more full stage limit, on the deadline's own clock: a red
        entrapment not on site 30 minutes late goes up again, a blue one a working day late.
        """
        extra = late.allowed * level
        if extra <= timedelta(0):
            # A person's deadline inside one night allows no working time; count it on the
            # wall clock rather than escalate on every pass.
            return late.due + (late.due - late.start) * level
        if late.clock is Clock.WORKING:
            return self.calendar.add_working_time(late.due, extra)
        return late.due + extra


def load_case_policy(
    *,
    deadlines_file: Path | None = None,
    calendar_file: Path | None = None,
    routing_file: Path | None = None,
    reopen_within: timedelta = REOPEN_WITHIN,
) -> CasePolicy:
    """The policy from its files (absent: the shipped deadlines and calendar, no routing).

    The routing file is the table in force until one is stored in the database (see
    `cases.routing_store`). Raises PolicyError, CalendarError or RoutingError (ValueErrors
    naming the file and field).
    """
    deadlines, calendar = _shipped_rules()
    return CasePolicy(
        deadlines=deadlines if deadlines_file is None else load_policy(deadlines_file),
        calendar=calendar if calendar_file is None else load_calendar(calendar_file),
        routing=RoutingInForce(None if routing_file is None else load_routing(routing_file)),
        reopen_within=reopen_within,
    )


def shipped_policy() -> CasePolicy:
    """The shipped deadlines and calendar without routing: the default for callers (the CLI,
    tests) that are not handed the service's policy.

    A new policy each call, with a routing holder of its own: one caller storing a table
    must not route another's cases. The files are read once.
    """
    return load_case_policy()


@functools.cache
def _shipped_rules() -> tuple[DeadlinePolicy, WorkCalendar]:
    return load_policy(DEFAULT_POLICY_PATH), load_calendar(DEFAULT_CALENDAR_PATH)
