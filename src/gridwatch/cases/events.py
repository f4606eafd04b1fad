"""CloudEvents 1.0 bodies for case events (pure)."""

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from gridwatch.cases.models import CaseSummary

SOURCE = "/gridwatch"


class CaseEventType(StrEnum):
    """The `type` of a case event, as the dispatch system filters on it."""

    OPENED = "gridwatch.case.opened"
    UPDATED = "gridwatch.case.updated"
    # The alarm behind a sensor-raised case is no longer active (the case stays open).
    ALARM_CLEARED = "gridwatch.case.alarm_cleared"
    ESCALATED = "gridwatch.case.escalated"
    OVERDUE = "gridwatch.case.overdue"
    DISPATCHED = "gridwatch.case.dispatched"
    ACCEPTED = "gridwatch.case.accepted"
    HANDLED = "gridwatch.case.handled"
    VERIFIED = "gridwatch.case.verified"
    REWORKED = "gridwatch.case.reworked"
    POSTPONED = "gridwatch.case.postponed"
    CLOSED = "gridwatch.case.closed"
    CANCELLED = "gridwatch.case.cancelled"
    REOPENED = "gridwatch.case.reopened"
    EVALUATED = "gridwatch.case.evaluated"


def new_event_id() -> str:
    """A unique event id; it doubles as the `webhook-id` receivers deduplicate on."""
    return f"evt_{secrets.token_hex(12)}"


def cloud_event(
    *, event_id: str, event_type: CaseEventType, case: CaseSummary, sequence: int, time: datetime
) -> dict[str, Any]:
    """A structured-mode CloudEvent whose data is the case with its per-case sequence."""
    data = case.model_dump(mode="json")
    data["sequence"] = sequence
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCE,
        "type": event_type.value,
        "subject": case.id,
        "time": time.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }
