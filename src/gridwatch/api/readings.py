"""A stored reading as the API shows it."""

from datetime import datetime

from pydantic import BaseModel

from gridwatch.domain import Reading, Value


class ReadingRead(BaseModel):
    """One stored reading: device time, arrival time, channel and decoded values."""

    ts: datetime
    received_at: datetime
    channel: str
    values: dict[str, Value]

    @classmethod
    def of(cls, reading: Reading) -> "ReadingRead":
        """The API view of a domain reading."""
        return cls(
            ts=reading.ts,
            received_at=reading.received_at,
            channel=reading.channel.value,
            values=reading.values,
        )
