"""MQTT 3.1.1 control packets as immutable values, and the errors raised for bad ones."""

import dataclasses
import enum


class PacketType(enum.IntEnum):
    """Control packet types: the high nibble of the fixed header's first byte."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnectReturnCode(enum.IntEnum):
    """CONNACK return codes that this broker sends."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2


SUBACK_FAILURE = 0x80
PROTOCOL_LEVEL = 4


class MqttProtocolError(Exception):
    """A peer broke the protocol; the connection that sent it must be closed."""


class MalformedPacketError(MqttProtocolError):
    """Bytes that do not decode to a valid MQTT 3.1.1 packet."""


class UnsupportedProtocolLevelError(MqttProtocolError):
    """A CONNECT for another protocol level, answered with CONNACK return code 1."""

    def __init__(self, level: int) -> None:
        super().__init__(f"unsupported protocol level {level}, only {PROTOCOL_LEVEL} is served")
        self.level = level


@dataclasses.dataclass(frozen=True, slots=True)
class Will:
    """The last will a client registers in CONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT: the first packet of every connection."""

    client_id: str
    clean_session: bool = True
    keepalive: int = 0
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ConnAck:
    """CONNACK: the answer to CONNECT."""

    session_present: bool
    return_code: int


@dataclasses.dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH: an application message; packet_id is None exactly when qos is 0."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PubAck:
    """PUBACK: QoS 1 acknowledgement."""

    packet_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class PubRec:
    """PUBREC: QoS 2 step one, publish received."""

    packet_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class PubRel:
    """PUBREL: QoS 2 step two, publish release."""

    packet_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class PubComp:
    """PUBCOMP: QoS 2 step three, publish complete."""

    packet_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE: (topic filter, requested QoS) pairs."""

    packet_id: int
    topics: tuple[tuple[str, int], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class SubAck:
    """SUBACK: one granted QoS (or 0x80) per requested filter."""

    packet_id: int
    return_codes: tuple[int, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE: topic filters to drop."""

    packet_id: int
    topics: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class UnsubAck:
    """UNSUBACK: the answer to UNSUBSCRIBE."""

    packet_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class PingReq:
    """PINGREQ: keepalive probe from the client."""


@dataclasses.dataclass(frozen=True, slots=True)
class PingResp:
    """PINGRESP: the answer to PINGREQ."""


@dataclasses.dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT: a clean end of the connection; the will is discarded."""


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
)
