"""Recording a live feed to JSON lines, and replaying a recording at a chosen speed."""

import asyncio
import json
import logging
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Annotated, Self

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridwatch.simulators._errors import BrokerError, RecordingError
from gridwatch.simulators._mqtt import parse_mqtt_url
from gridwatch.simulators._pacing import Pacer

logger = logging.getLogger("gridwatch.simulators")

# Payloads are kept as text; bytes that are not UTF-8 survive the JSON round trip as lone
# surrogates (`surrogateescape`), so a replay sends exactly the bytes that were recorded.
_ERRORS = "surrogateescape"


class RecordedMessage(BaseModel):
    """One line of a recording: topic, payload text, seconds since the recording began."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: Annotated[str, Field(min_length=1)]
    payload: str
    t: Annotated[float, Field(ge=0)]
    qos: Annotated[int, Field(ge=0, le=2)] = 1
    retain: bool = False


async def record(
    mqtt_url: str,
    prefix: str,
    out_path: str | Path,
    duration_s: float | None,
    *,
    max_messages: int | None = None,
    ready: asyncio.Event | None = None,
) -> int:
    """Write every message under `{prefix}/#` to `out_path` as JSON lines; return the count.

    Stops after `duration_s` wall seconds, after `max_messages`, or when cancelled. `ready`
    is set once the subscription stands, so a caller can start the feed without losing any.
    """
    broker = parse_mqtt_url(mqtt_url)
    loop = asyncio.get_running_loop()
    count = 0
    # MQTT 5 with retain-as-published keeps the retain flag of live messages (statuses), which
    # MQTT 3.1.1 clears on delivery, so a replay republishes them retained as they were.
    client = broker.client(
        identifier=f"gwsim-recorder-{uuid.uuid4().hex[:8]}", protocol=aiomqtt.ProtocolVersion.V5
    )
    options = SubscribeOptions(qos=1, retainAsPublished=True)
    with _LineWriter(Path(out_path)) as writer:
        try:
            async with client:
                await client.subscribe(f"{prefix}/#", options=options)
                if ready is not None:
                    ready.set()
                origin = loop.time()
                logger.info("recording %s/# from %s to %s", prefix, broker, out_path)
                async with asyncio.timeout(duration_s):
                    async for message in client.messages:
                        writer.write(_line(message, loop.time() - origin))
                        count += 1
                        if max_messages is not None and count >= max_messages:
                            break
        except TimeoutError:
            pass  # the duration is up: the normal end of a timed recording
        except aiomqtt.MqttError as err:
            raise BrokerError(str(broker), f"recording failed: {err}") from err
    logger.info("recorded %d messages to %s", count, out_path)
    return count


async def replay(path: str | Path, mqtt_url: str, speed: float | None = 1.0) -> int:
    """Publish a recording back at its recorded pacing scaled by `speed`; return the count."""
    pacer = Pacer(speed)
    broker = parse_mqtt_url(mqtt_url)
    messages = await asyncio.to_thread(load_recording, path)
    client = broker.client(identifier=f"gwsim-replay-{uuid.uuid4().hex[:8]}")
    count = 0
    try:
        async with client:
            pacer.start()
            for message in messages:
                await pacer.wait_until(message.t)
                payload = message.payload.encode("utf-8", _ERRORS)
                await client.publish(message.topic, payload, qos=message.qos, retain=message.retain)
                count += 1
    except aiomqtt.MqttError as err:
        raise BrokerError(str(broker), f"replay failed after {count} messages: {err}") from err
    logger.info("replayed %d messages from %s", count, path)
    return count


def load_recording(path: str | Path) -> list[RecordedMessage]:
    """Read and validate a recording, in file order (blank lines are skipped)."""
    messages: list[RecordedMessage] = []
    try:
        with Path(path).open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    messages.append(_parse_line(str(path), number, line))
    except OSError as err:
        raise RecordingError(str(path), f"cannot read: {err.strerror}") from err
    return messages


def _parse_line(path: str, number: int, line: str) -> RecordedMessage:
    # The stdlib parser, not pydantic's: it accepts the lone surrogates of non-UTF-8 payloads.
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise RecordingError(path, f"invalid JSON: {err.msg}", line=number) from err
    try:
        return RecordedMessage.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "line"
        raise RecordingError(path, f"{field}: {first['msg']}", line=number) from err


def _line(message: aiomqtt.Message, t_s: float) -> str:
    raw = message.payload
    text = raw.decode("utf-8", _ERRORS) if isinstance(raw, bytes | bytearray) else str(raw or "")
    record = {
        "topic": message.topic.value,
        "payload": text,
        "t": round(t_s, 3),
        "qos": message.qos,
        "retain": message.retain,
    }
    return json.dumps(record, ensure_ascii=True) + "\n"


class _LineWriter:
    """Appends lines to a file, flushed per line so a killed recorder loses at most one."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[str] | None = None

    def __enter__(self) -> Self:
        # Local appends of a few hundred bytes are fast enough to do on the event loop.
        try:
            self._file = self._path.open("w", encoding="utf-8")
        except OSError as err:
            raise RecordingError(str(self._path), f"cannot write: {err.strerror}") from err
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()

    def write(self, line: str) -> None:
        """Write one line and flush it."""
        assert self._file is not None
        self._file.write(line)
        self._file.flush()
