"""What the rules engine tells the case domain."""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from gridwatch.domain.readings import Value
from gridwatch.domain.severity import Severity


class AlarmTransition(StrEnum):
    """How an alarm's state changed with the reading that was evaluated."""

    RAISED = "raised"
    ESCALATED = "escalated"
    REPEATED = "repeated"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """An alarm change for one (sensor, rule) fingerprint, with the values that caused it."""

    sensor_id: str
    rule_id: str
    transition: AlarmTransition
    severity: Severity
    category: str
    title: str
    at: datetime
    values: dict[str, Value] = field(default_factory=dict)
    # A device-health alarm (offline, stuck, battery, clock): a maintenance case, not a city one.
    maintenance: bool = False
    # The window the tripping values were aggregated over ("3h"), if any, and why in words,
    # so a case shows what raised it: "rain_mm sum over 3h 104.2 ≥ 100 (red)".
    window: str | None = None
    why: str = ""
    # The rule's case group: alarms of one group on one sensor belong to one case.
    case_group: str | None = None

    @property
    def fingerprint(self) -> str:
        """The (sensor, rule) this alarm is the state of."""
        return f"{self.sensor_id}/{self.rule_id}"

    @property
    def case_fingerprint(self) -> str:
        """The one open case this alarm belongs to: per (sensor, case group or rule)."""
        return f"{self.sensor_id}/{self.case_group or self.rule_id}"
