"""The packet codec: wire bytes, round trips and every malformed case the broker must refuse."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.broker._codec import (
    MAX_REMAINING_LENGTH,
    decode,
    decode_packet,
    decode_remaining_length,
    encode,
    encode_remaining_length,
)
from gridwatch.broker._packets import (
    ConnAck,
    Connect,
    Disconnect,
    MalformedPacketError,
    Packet,
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


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (MAX_REMAINING_LENGTH, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_matches_the_spec_table(value, wire):
    assert encode_remaining_length(value) == wire
    assert decode_remaining_length(wire + b"tail") == (value, len(wire))


@given(st.integers(min_value=0, max_value=MAX_REMAINING_LENGTH))
def test_remaining_length_round_trips(value):
    wire = encode_remaining_length(value)
    assert decode_remaining_length(wire) == (value, len(wire))


@pytest.mark.parametrize("value", [-1, MAX_REMAINING_LENGTH + 1])
def test_remaining_length_out_of_range_is_refused(value):
    with pytest.raises(ValueError, match="remaining length"):
        encode_remaining_length(value)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [(b"\xff\xff\xff\xff\x01", "longer than four"), (b"\xff\xff", "truncated"), (b"", "truncated")],
)
def test_bad_remaining_length_is_malformed(wire, reason):
    with pytest.raises(MalformedPacketError, match=reason):
        decode_remaining_length(wire)


PACKETS: list[Packet] = [
    Connect("dev-1"),
    Connect("gw", clean_session=False, keepalive=60, username="u", password=b"\x00p"),
    Connect("dev-2", keepalive=5, will=Will("gridwatch/dev-2/status", b"offline", 1, True)),
    Connect("", will=Will("w", b"", 2, False), username="only-user"),
    ConnAck(session_present=True, return_code=0),
    ConnAck(session_present=False, return_code=2),
    Publish("a/b", b"payload"),
    Publish("a/b", b"", qos=1, retain=True, dup=True, packet_id=1),
    Publish("città/ü", b"\x00\xff" * 200, qos=2, packet_id=65535),
    PubAck(7),
    PubRec(8),
    PubRel(9),
    PubComp(10),
    Subscribe(11, (("a/+", 0), ("#", 1), ("$SYS/#", 2))),
    SubAck(11, (0, 1, 2, 0x80)),
    Unsubscribe(12, ("a/+", "#")),
    UnsubAck(12),
    PingReq(),
    PingResp(),
    Disconnect(),
]


@pytest.mark.parametrize("packet", PACKETS, ids=repr)
def test_every_packet_round_trips(packet):
    assert decode(encode(packet)) == packet


@pytest.mark.parametrize(
    ("packet", "wire"),
    [
        (PingReq(), b"\xc0\x00"),
        (PingResp(), b"\xd0\x00"),
        (Disconnect(), b"\xe0\x00"),
        (ConnAck(True, 0), b"\x20\x02\x01\x00"),
        (PubRel(1), b"\x62\x02\x00\x01"),
        (Publish("a", b"x", qos=1, retain=True, packet_id=2), b"\x33\x06\x00\x01a\x00\x02x"),
        (Subscribe(1, (("a", 1),)), b"\x82\x06\x00\x01\x00\x01a\x01"),
        (
            Connect("c", keepalive=10),
            b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x0a\x00\x01c",
        ),
    ],
    ids=repr,
)
def test_wire_bytes_are_exact(packet, wire):
    assert encode(packet) == wire


@given(
    topic=st.text(min_size=1, max_size=50).filter(lambda t: "\x00" not in t),
    payload=st.binary(max_size=300),
    qos=st.sampled_from([0, 1, 2]),
    retain=st.booleans(),
    packet_id=st.integers(min_value=1, max_value=65535),
)
def test_publish_round_trips(topic, payload, qos, retain, packet_id):
    packet = Publish(topic, payload, qos, retain, dup=qos > 0, packet_id=packet_id if qos else None)
    assert decode(encode(packet)) == packet


def _connect_body(flags: int, tail: bytes = b"\x00\x01c") -> bytes:
    return b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x3c" + tail


@pytest.mark.parametrize(
    ("first_byte", "body", "reason"),
    [
        (0x00, b"", "reserved packet type 0"),
        (0xF0, b"", "reserved packet type 15"),
        (0x60, b"\x00\x01", "invalid flags"),
        (0x80, b"\x00\x01\x00\x01a\x00", "invalid flags"),
        (0xA0, b"\x00\x01\x00\x01a", "invalid flags"),
        (0xC1, b"", "invalid flags"),
        (0x36, b"\x00\x01a\x00\x01", "QoS 3"),
        (0x38, b"\x00\x01a", "DUP flag on a QoS 0"),
        (0x32, b"\x00\x01a\x00\x00", "packet identifier 0"),
        (0x32, b"\x00\x01a", "shorter"),
        (0x30, b"\x00\x05ab", "shorter"),
        (0x30, b"\x00\x02\xc3\x28", "UTF-8"),
        (0x30, b"\x00\x03a\x00b", "U\\+0000"),
        (0x82, b"\x00\x01", "without topic filters"),
        (0x82, b"\x00\x01\x00\x01a\x03", "options byte"),
        (0x82, b"\x00\x01\x00\x01a\x05", "options byte"),
        (0xA2, b"\x00\x01", "without topic filters"),
        (0x40, b"\x00\x01\x00", "unexpected bytes"),
        (0xC0, b"\x00", "unexpected bytes"),
        (0x20, b"\x02\x00", "reserved CONNACK"),
        (0x10, _connect_body(0x03), "reserved CONNECT flag"),
        (0x10, _connect_body(0x40), "password flag without user name"),
        (0x10, _connect_body(0x1E), "will QoS"),
        (0x10, _connect_body(0x22), "will QoS or retain"),
        (0x10, _connect_body(0x02, b"\x00\x01c\x00"), "unexpected bytes"),
        (0x10, b"\x00\x04MQTX\x04\x02\x00\x3c\x00\x01c", "unknown protocol name"),
        (0x10, b"\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x01c", "protocol name 'MQIsdp'"),
    ],
)
def test_malformed_packets_are_refused(first_byte, body, reason):
    with pytest.raises(MalformedPacketError, match=reason):
        decode_packet(first_byte, body)


@pytest.mark.parametrize(
    ("name", "level"), [(b"MQTT", 5), (b"MQTT", 3), (b"MQIsdp", 3), (b"MQTT", 0)]
)
def test_other_protocol_levels_are_reported_with_their_level(name, level):
    body = len(name).to_bytes(2, "big") + name + bytes([level, 0x02, 0, 60, 0, 1]) + b"c"
    with pytest.raises(UnsupportedProtocolLevelError) as raised:
        decode_packet(0x10, body)
    assert raised.value.level == level


@pytest.mark.parametrize(
    "data", [b"", b"\xc0", b"\xc0\x01", b"\xc0\x00\x00", b"\x30\x80"], ids=repr
)
def test_decode_needs_exactly_one_whole_packet(data):
    with pytest.raises(MalformedPacketError):
        decode(data)


@pytest.mark.parametrize(
    "packet",
    [Publish("t", b"", qos=1), Publish("t", b"", qos=2, packet_id=0), Publish("x" * 70_000, b"")],
    ids=["qos1-without-id", "qos2-id-0", "topic-too-long"],
)
def test_unencodable_packets_raise_value_error(packet):
    with pytest.raises(ValueError, match=r"packet id|exceeds"):
        encode(packet)
