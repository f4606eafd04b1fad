"""The lean subscriber connection: parsing and acknowledgements, bytes in and bytes out."""

import asyncio

import pytest

from gridwatch.adapters.mqtt_wire import SubscriberConnection
from gridwatch.broker._codec import encode
from gridwatch.broker._packets import ConnAck, PingResp, Publish, SubAck


class RecordingTransport(asyncio.Transport):
    """Keeps what the connection writes; tells whether reading is paused."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.paused = False
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def connected(**kwargs) -> tuple[SubscriberConnection, RecordingTransport]:
    connection = SubscriberConnection(
        client_id="gw-test", topics=[("gw/+/telemetry", 1)], keepalive_s=30, **kwargs
    )
    transport = RecordingTransport()
    connection.connection_made(transport)
    return connection, transport


def publishes(count: int, *, qos: int = 1, size: int = 20) -> bytes:
    return b"".join(
        encode(
            Publish(
                topic=f"gw/S{i}/telemetry",
                payload=b"x" * size,
                qos=qos,
                packet_id=i + 1 if qos else None,
            )
        )
        for i in range(count)
    )


async def test_connect_is_sent_first_with_a_persistent_session_and_credentials():
    _, transport = connected(username="gateway", password="s3cret")
    (first,) = transport.writes
    assert first[0] == 0x10  # CONNECT
    assert b"MQTT" in first
    assert b"gw-test" in first
    assert b"gateway" in first
    assert b"s3cret" in first
    flags = first[first.index(b"MQTT") + 5]
    assert flags & 0x02 == 0  # clean session off: the broker keeps our session


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 100_000])
async def test_packets_split_anywhere_are_parsed_once_each_in_order(chunk):
    connection, _ = connected()
    data = publishes(50)
    for start in range(0, len(data), chunk):
        connection.data_received(data[start : start + chunk])
    taken = connection.take(1_000)
    assert [(t, p, pid, q) for t, p, pid, q, _ in taken] == [
        (f"gw/S{i}/telemetry", b"x" * 20, i + 1, 1) for i in range(50)
    ]
    arrivals = [arrival for *_, arrival in taken]
    assert arrivals == sorted(set(arrivals)), "arrival times must be strictly increasing"


async def test_a_large_payload_with_a_multi_byte_length_arrives_whole():
    connection, _ = connected()
    connection.data_received(publishes(1, size=300_000))
    ((_, payload, _, _, _),) = connection.take(10)
    assert len(payload) == 300_000


async def test_qos_0_messages_carry_no_packet_id():
    connection, _ = connected()
    connection.data_received(publishes(3, qos=0))
    assert [(pid, qos) for _, _, pid, qos, _ in connection.take(10)] == [(0, 0)] * 3


async def test_all_acknowledgements_of_a_batch_go_in_one_write():
    connection, transport = connected()
    transport.writes.clear()
    connection.ack([1, 2, 300])
    assert transport.writes == [b"\x40\x02\x00\x01" + b"\x40\x02\x00\x02" + b"\x40\x02\x01\x2c"]


async def test_take_respects_the_limit_and_keeps_the_rest():
    connection, _ = connected()
    connection.data_received(publishes(10))
    assert len(connection.take(4)) == 4
    assert connection.arrived.is_set()
    assert len(connection.take(100)) == 6
    assert not connection.arrived.is_set()


async def test_a_full_inbox_pauses_reading_until_half_is_taken():
    connection, transport = connected(max_inbox=10)
    connection.data_received(publishes(12))
    assert transport.paused
    connection.take(3)
    assert transport.paused
    connection.take(5)
    assert not transport.paused


async def test_connack_and_suback_settle_the_handshake():
    connection, _ = connected()
    connection.data_received(encode(ConnAck(session_present=True, return_code=0)))
    assert await connection.connacked is True
    connection.data_received(encode(SubAck(packet_id=1, return_codes=(1,))))
    assert connection.subscribed.is_set()
    connection.data_received(encode(PingResp()))
    assert not connection.lost.done()


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (encode(ConnAck(session_present=False, return_code=4)), "bad user name or password"),
        (encode(ConnAck(session_present=False, return_code=5)), "not authorised"),
        (encode(SubAck(packet_id=1, return_codes=(0x80,))), "refused the subscription"),
        (publishes(1, qos=2), "QoS 2"),
        (b"\x30\xff\xff\xff\xff\x01", "longer than four bytes"),
    ],
)
async def test_what_a_subscriber_cannot_accept_drops_the_connection_saying_why(packet, reason):
    connection, transport = connected()
    connection.data_received(packet)
    assert transport.closed
    assert reason in str(await connection.lost)
    with pytest.raises(ConnectionError):
        await connection.connacked


async def test_a_silent_broker_is_dropped_after_one_and_a_half_keepalives(monkeypatch):
    connection, transport = connected()
    clock = [1_000.0]
    monkeypatch.setattr("gridwatch.adapters.mqtt_wire.time.monotonic", lambda: clock[0])
    connection.data_received(encode(PingResp()))
    transport.writes.clear()
    clock[0] += 20
    connection.ping()
    assert transport.writes == [b"\xc0\x00"]  # PINGREQ
    clock[0] += 30
    connection.ping()
    assert transport.closed
    assert "keepalive" in str(await connection.lost)
