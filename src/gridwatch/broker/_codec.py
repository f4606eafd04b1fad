"""Pure encoding and decoding of MQTT 3.1.1 packets (no I/O)."""

import struct

from gridwatch.broker._packets import (
    PROTOCOL_LEVEL,
    ConnAck,
    Connect,
    Disconnect,
    MalformedPacketError,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocolLevelError,
    Will,
)

MAX_REMAINING_LENGTH = 268_435_455
_MAX_STRING_BYTES = 0xFFFF
# PUBREL, SUBSCRIBE and UNSUBSCRIBE carry fixed flags 0b0010; every other type but PUBLISH 0.
_REQUIRED_FLAGS = {PacketType.PUBREL: 2, PacketType.SUBSCRIBE: 2, PacketType.UNSUBSCRIBE: 2}


def encode_remaining_length(length: int) -> bytes:
    """Encode the fixed header's remaining length as the 1-4 byte variable integer."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {length} outside 0..{MAX_REMAINING_LENGTH}")
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | 0x80 if length else digit)
        if not length:
            return bytes(out)


def decode_remaining_length(data: bytes) -> tuple[int, int]:
    """Decode a remaining length at the start of data; return (value, bytes consumed)."""
    value = 0
    for index, byte in enumerate(data[:4]):
        value += (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            return value, index + 1
    if len(data) >= 4:
        raise MalformedPacketError("remaining length longer than four bytes")
    raise MalformedPacketError("remaining length truncated")


def _string(value: str) -> bytes:
    raw = value.encode()
    return _binary(raw)


def _binary(raw: bytes) -> bytes:
    if len(raw) > _MAX_STRING_BYTES:
        raise ValueError(f"field of {len(raw)} bytes exceeds {_MAX_STRING_BYTES}")
    return struct.pack("!H", len(raw)) + raw


def _frame(packet_type: PacketType, flags: int, body: bytes) -> bytes:
    return bytes([packet_type << 4 | flags]) + encode_remaining_length(len(body)) + body


def _encode_connect(packet: Connect) -> bytes:
    flags = 0x02 if packet.clean_session else 0
    tail = _string(packet.client_id)
    if packet.will is not None:
        flags |= 0x04 | packet.will.qos << 3 | (0x20 if packet.will.retain else 0)
        tail += _string(packet.will.topic) + _binary(packet.will.payload)
    if packet.username is not None:
        flags |= 0x80
        tail += _string(packet.username)
    if packet.password is not None:
        flags |= 0x40
        tail += _binary(packet.password)
    head = _string("MQTT") + struct.pack("!BBH", PROTOCOL_LEVEL, flags, packet.keepalive)
    return _frame(PacketType.CONNECT, 0, head + tail)


def _encode_publish(packet: Publish) -> bytes:
    flags = packet.dup << 3 | packet.qos << 1 | packet.retain
    body = _string(packet.topic)
    if packet.qos:
        if not packet.packet_id:
            raise ValueError("a QoS 1 or 2 PUBLISH needs a non-zero packet id")
        body += struct.pack("!H", packet.packet_id)
    return _frame(PacketType.PUBLISH, flags, body + packet.payload)


def encode(packet: Packet) -> bytes:
    """Encode one packet into its wire bytes."""
    match packet:
        case Connect():
            return _encode_connect(packet)
        case ConnAck(session_present=present, return_code=code):
            return _frame(PacketType.CONNACK, 0, bytes([present, code]))
        case Publish():
            return _encode_publish(packet)
        case PubAck(packet_id=pid):
            return _frame(PacketType.PUBACK, 0, struct.pack("!H", pid))
        case PubRec(packet_id=pid):
            return _frame(PacketType.PUBREC, 0, struct.pack("!H", pid))
        case PubRel(packet_id=pid):
            return _frame(PacketType.PUBREL, 2, struct.pack("!H", pid))
        case PubComp(packet_id=pid):
            return _frame(PacketType.PUBCOMP, 0, struct.pack("!H", pid))
        case Subscribe(packet_id=pid, topics=topics):
            body = b"".join(_string(flt) + bytes([qos]) for flt, qos in topics)
            return _frame(PacketType.SUBSCRIBE, 2, struct.pack("!H", pid) + body)
        case SubAck(packet_id=pid, return_codes=codes):
            return _frame(PacketType.SUBACK, 0, struct.pack("!H", pid) + bytes(codes))
        case Unsubscribe(packet_id=pid, topics=filters):
            body = b"".join(_string(flt) for flt in filters)
            return _frame(PacketType.UNSUBSCRIBE, 2, struct.pack("!H", pid) + body)
        case UnsubAck(packet_id=pid):
            return _frame(PacketType.UNSUBACK, 0, struct.pack("!H", pid))
        case PingReq():
            return _frame(PacketType.PINGREQ, 0, b"")
        case PingResp():
            return _frame(PacketType.PINGRESP, 0, b"")
        case Disconnect():
            return _frame(PacketType.DISCONNECT, 0, b"")


class _Cursor:
    """Reads fields off a packet body, raising MalformedPacketError when it runs short."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def packet_id(self) -> int:
        pid = self.u16()
        if pid == 0:
            raise MalformedPacketError("packet identifier 0")
        return pid

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        try:
            value = self.binary().decode("utf-8")
        except UnicodeDecodeError as err:
            raise MalformedPacketError("string is not well-formed UTF-8") from err
        if "\x00" in value:
            raise MalformedPacketError("string contains U+0000")
        return value

    def take(self, size: int) -> bytes:
        if self._pos + size > len(self._data):
            raise MalformedPacketError("packet body shorter than its fields")
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def rest(self) -> bytes:
        chunk = self._data[self._pos :]
        self._pos = len(self._data)
        return chunk

    @property
    def exhausted(self) -> bool:
        return self._pos == len(self._data)

    def finish(self) -> None:
        if not self.exhausted:
            raise MalformedPacketError("unexpected bytes after the packet's fields")


def _decode_connect(body: _Cursor) -> Connect:
    name = body.string()
    if name not in ("MQTT", "MQIsdp"):
        raise MalformedPacketError(f"unknown protocol name {name!r}")
    level = body.u8()
    if level != PROTOCOL_LEVEL:
        raise UnsupportedProtocolLevelError(level)
    if name != "MQTT":
        raise MalformedPacketError(f"protocol name {name!r} with level {level}")
    flags, keepalive = body.u8(), body.u16()
    will_qos, has_will = (flags >> 3) & 0x03, bool(flags & 0x04)
    if flags & 0x01:
        raise MalformedPacketError("reserved CONNECT flag set")
    if will_qos == 3 or (not has_will and flags & 0x38):
        raise MalformedPacketError("invalid will QoS or retain flags")
    if flags & 0x40 and not flags & 0x80:
        raise MalformedPacketError("password flag without user name flag")
    client_id = body.string()
    will = None
    if has_will:
        will = Will(body.string(), body.binary(), will_qos, bool(flags & 0x20))
    username = body.string() if flags & 0x80 else None
    password = body.binary() if flags & 0x40 else None
    body.finish()
    return Connect(client_id, bool(flags & 0x02), keepalive, will, username, password)


def _decode_publish(flags: int, body: _Cursor) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacketError("PUBLISH with QoS 3")
    if qos == 0 and flags & 0x08:
        raise MalformedPacketError("DUP flag on a QoS 0 PUBLISH")
    topic = body.string()
    packet_id = body.packet_id() if qos else None
    return Publish(topic, body.rest(), qos, bool(flags & 0x01), bool(flags & 0x08), packet_id)


def _decode_subscribe(body: _Cursor) -> Subscribe:
    packet_id = body.packet_id()
    topics: list[tuple[str, int]] = []
    while not body.exhausted:
        topic_filter, options = body.string(), body.u8()
        if options > 2:
            raise MalformedPacketError(f"SUBSCRIBE options byte {options:#04x}")
        topics.append((topic_filter, options))
    if not topics:
        raise MalformedPacketError("SUBSCRIBE without topic filters")
    return Subscribe(packet_id, tuple(topics))


def _decode_unsubscribe(body: _Cursor) -> Unsubscribe:
    packet_id = body.packet_id()
    topics: list[str] = []
    while not body.exhausted:
        topics.append(body.string())
    if not topics:
        raise MalformedPacketError("UNSUBSCRIBE without topic filters")
    return Unsubscribe(packet_id, tuple(topics))


def _decode_connack(body: _Cursor) -> ConnAck:
    flags, code = body.u8(), body.u8()
    if flags > 1:
        raise MalformedPacketError("reserved CONNACK flags set")
    return ConnAck(bool(flags), code)


def _decode_body(packet_type: PacketType, flags: int, body: _Cursor) -> Packet:
    match packet_type:
        case PacketType.CONNECT:
            return _decode_connect(body)
        case PacketType.PUBLISH:
            return _decode_publish(flags, body)
        case PacketType.SUBSCRIBE:
            return _decode_subscribe(body)
        case PacketType.UNSUBSCRIBE:
            return _decode_unsubscribe(body)
        case PacketType.CONNACK:
            return _decode_connack(body)
        case PacketType.SUBACK:
            return SubAck(body.packet_id(), tuple(body.rest()))
        case PacketType.PUBACK:
            return PubAck(body.packet_id())
        case PacketType.PUBREC:
            return PubRec(body.packet_id())
        case PacketType.PUBREL:
            return PubRel(body.packet_id())
        case PacketType.PUBCOMP:
            return PubComp(body.packet_id())
        case PacketType.UNSUBACK:
            return UnsubAck(body.packet_id())
        case PacketType.PINGREQ:
            return PingReq()
        case PacketType.PINGRESP:
            return PingResp()
        case PacketType.DISCONNECT:
            return Disconnect()


def decode_packet(first_byte: int, body: bytes) -> Packet:
    """Decode a packet from its fixed header's first byte and its remaining bytes."""
    try:
        packet_type = PacketType(first_byte >> 4)
    except ValueError as err:
        raise MalformedPacketError(f"reserved packet type {first_byte >> 4}") from err
    flags = first_byte & 0x0F
    if packet_type != PacketType.PUBLISH and flags != _REQUIRED_FLAGS.get(packet_type, 0):
        raise MalformedPacketError(f"invalid flags {flags:#x} for {packet_type.name}")
    cursor = _Cursor(body)
    packet = _decode_body(packet_type, flags, cursor)
    cursor.finish()
    return packet


def decode(data: bytes) -> Packet:
    """Decode exactly one complete packet from data."""
    if not data:
        raise MalformedPacketError("empty packet")
    length, consumed = decode_remaining_length(data[1:])
    if len(data) != 1 + consumed + length:
        raise MalformedPacketError(f"remaining length {length} does not match the data")
    return decode_packet(data[0], data[1 + consumed :])
