"""Messages set aside: counted, logged with the reason, and kept on disk for inspection."""

import base64
import json
import logging
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger("gridwatch.ingest")

RECENT_REJECTS = 200


class RejectReason(StrEnum):
    """Why a message was set aside."""

    BAD_TOPIC = "bad_topic"
    UNKNOWN_SENSOR = "unknown_sensor"
    SENSOR_RETIRED = "sensor_retired"
    BAD_PAYLOAD = "bad_payload"
    INTERNAL_ERROR = "internal_error"
    STORE_REJECTED = "store_rejected"
    MODBUS_EXCEPTION = "modbus_exception"  # the device answered with an exception code
    BAD_REGISTER_VALUE = "bad_register_value"  # registers the map cannot turn into a reading


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """One message that was not accepted, and why."""

    topic: str
    payload: bytes
    received_at: datetime
    reason: RejectReason
    detail: str
    sensor_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready record; the payload as text when it is UTF-8, else base64."""
        try:
            payload: dict[str, str] = {"text": self.payload.decode("utf-8")}
        except UnicodeDecodeError:
            payload = {"base64": base64.b64encode(self.payload).decode()}
        return {
            "topic": self.topic,
            "sensor_id": self.sensor_id,
            "received_at": self.received_at.isoformat(),
            "reason": self.reason.value,
            "detail": self.detail,
            "payload": payload,
        }


class RejectLog:
    """Appends rejected messages as JSON lines to a file and keeps counts and recent ones."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self.counts: Counter[RejectReason] = Counter()
        self.recent: deque[RejectedMessage] = deque(maxlen=RECENT_REJECTS)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, rejected: RejectedMessage) -> None:
        """Record the message; one bad message never stops the stream."""
        self.counts[rejected.reason] += 1
        self.recent.append(rejected)
        log.warning(
            "message set aside sensor=%s topic=%s reason=%s: %s",
            rejected.sensor_id or "-", rejected.topic, rejected.reason, rejected.detail,
        )  # fmt: skip
        if self._path is not None:
            with self._path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(rejected.as_json(), ensure_ascii=False) + "\n")
