"""One client connection: CONNECT handshake, a read loop and its own writer task."""

import asyncio
import collections
import dataclasses
import logging
import uuid

from gridwatch.broker._codec import decode_packet, decode_remaining_length, encode
from gridwatch.broker._packets import (
    SUBACK_FAILURE,
    ConnAck,
    Connect,
    ConnectReturnCode,
    Disconnect,
    MqttProtocolError,
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
)
from gridwatch.broker._router import Router
from gridwatch.broker._session import Session
from gridwatch.broker._topics import is_valid_topic_filter, is_valid_topic_name

logger = logging.getLogger("gridwatch.broker")

# A socket that never sends CONNECT is closed after this long.
CONNECT_TIMEOUT = 10.0
# How long a closing socket may take to flush before it is aborted.
CLOSE_TIMEOUT = 1.0
# Packets encoded per write, so one busy client yields to the others between drains.
_WRITE_BATCH = 64


async def read_packet(reader: asyncio.StreamReader, *, expect: PacketType | None = None) -> Packet:
    """Read and decode one packet; raise IncompleteReadError at end of stream."""
    first = await reader.readexactly(1)
    # Checked before the body is read, so a stray protocol (say HTTP) is refused at once.
    if expect is not None and first[0] >> 4 != expect:
        raise MqttProtocolError(f"first byte {first[0]:#04x} does not start a {expect.name}")
    header = bytearray()
    while len(header) < 4:
        byte = await reader.readexactly(1)
        header += byte
        if byte[0] < 0x80:
            break
    length, _ = decode_remaining_length(bytes(header))
    body = await reader.readexactly(length) if length else b""
    return decode_packet(first[0], body)


@dataclasses.dataclass(frozen=True, slots=True)
class _Ending:
    reason: str
    publish_will: bool = True


class Connection:
    """Serves one TCP connection; a slow reader only ever blocks its own writer task."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, router: Router
    ) -> None:
        self.client_id = "-"
        self._reader = reader
        self._writer = writer
        self._router = router
        self._peer = writer.get_extra_info("peername")
        # Acks and responses; sent before queued PUBLISHes so flow control never waits on data.
        self._control: collections.deque[Packet] = collections.deque()
        self._wakeup = asyncio.Event()
        self._kick: _Ending | None = None
        self._finished = asyncio.Event()

    def wake(self) -> None:
        """Tell the writer task there is something to send."""
        self._wakeup.set()

    async def kick(self, reason: str, *, publish_will: bool) -> None:
        """Close the connection from the broker's side and wait until it has ended."""
        if self._kick is None:
            logger.info("closing connection client_id=%s reason=%s", self.client_id, reason)
            self._kick = _Ending(reason, publish_will)
            self._writer.transport.abort()
        await self._finished.wait()

    async def run(self) -> None:
        """Serve the connection until it ends; a misbehaving peer never makes this raise."""
        try:
            connect = await self._handshake()
            if connect is not None:
                await self._serve(connect)
        finally:
            self._finished.set()
            await self._close()

    async def _handshake(self) -> Connect | None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                packet = await read_packet(self._reader, expect=PacketType.CONNECT)
        except UnsupportedProtocolLevelError as err:
            self._warn(str(err))
            await self._send_now(ConnAck(False, ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION))
            return None
        except TimeoutError:
            self._warn("no CONNECT received in time")
            return None
        except MqttProtocolError as err:
            self._warn(f"bad CONNECT: {err}")
            return None
        except (EOFError, OSError) as err:
            logger.info("connection closed before CONNECT peer=%s reason=%r", self._peer, err)
            return None
        assert isinstance(packet, Connect)  # guaranteed by expect=CONNECT
        self.client_id = packet.client_id or "-"
        if packet.will is not None and not is_valid_topic_name(packet.will.topic):
            self._warn(f"invalid will topic {packet.will.topic!r}")
            return None
        if packet.client_id:
            return packet
        if not packet.clean_session:
            self._warn("empty client id needs clean session")
            await self._send_now(ConnAck(False, ConnectReturnCode.IDENTIFIER_REJECTED))
            return None
        self.client_id = f"auto-{uuid.uuid4()}"
        return dataclasses.replace(packet, client_id=self.client_id)

    async def _serve(self, connect: Connect) -> None:
        await self._router.take_over(connect.client_id, clean_session=connect.clean_session)
        session, present = self._router.open_session(
            connect.client_id, clean_session=connect.clean_session
        )
        session.link = self
        self._control.append(ConnAck(present, ConnectReturnCode.ACCEPTED))
        self._control.extend(session.resend())
        self.wake()
        logger.info(
            "client connected client_id=%s peer=%s clean_session=%s session_present=%s "
            "keepalive=%d",
            self.client_id,
            self._peer,
            connect.clean_session,
            present,
            connect.keepalive,
        )
        ending: _Ending | None = None
        try:
            async with asyncio.TaskGroup() as tasks:
                writer = tasks.create_task(
                    self._write_loop(session), name=f"mqtt-writer-{self.client_id}"
                )
                try:
                    ending = await self._read_loop(session, connect.keepalive)
                finally:
                    writer.cancel()
        finally:
            # No ending means this task was cancelled (broker shutdown) or hit a bug (logged by
            # the broker): no will then, as the client did nothing wrong.
            will = connect.will if ending is not None and ending.publish_will else None
            self._router.close_session(session, will)
            logger.info(
                "client disconnected client_id=%s reason=%s",
                self.client_id,
                ending.reason if ending is not None else "connection task stopped",
            )

    async def _read_loop(self, session: Session, keepalive: int) -> _Ending:
        # The spec allows one and a half keepalive periods of silence [MQTT-3.1.2-24].
        timeout = keepalive * 1.5 if keepalive else None
        while True:
            try:
                async with asyncio.timeout(timeout):
                    packet = await read_packet(self._reader)
                if isinstance(packet, Disconnect):
                    return _Ending("client sent DISCONNECT", publish_will=False)
                self._handle(session, packet)
            except TimeoutError:
                self._warn(f"no packet within 1.5 x keepalive ({keepalive} s)")
                return _Ending("keepalive timeout")
            except MqttProtocolError as err:
                self._warn(str(err))
                return _Ending(f"protocol error: {err}")
            except (EOFError, OSError) as err:
                return self._kick or _Ending(f"connection lost: {err!r}")

    def _handle(self, session: Session, packet: Packet) -> None:
        match packet:
            case Publish():
                self._on_publish(session, packet)
            case PubAck(packet_id=packet_id):
                session.acknowledge(packet_id)
                self.wake()
            case PubRec(packet_id=packet_id):
                release = session.received(packet_id)
                if release is not None:
                    self._send(release)
            case PubRel(packet_id=packet_id):
                session.release_incoming_qos2(packet_id)
                self._send(PubComp(packet_id))
            case PubComp(packet_id=packet_id):
                session.complete(packet_id)
                self.wake()
            case Subscribe():
                self._on_subscribe(session, packet)
            case Unsubscribe(packet_id=packet_id, topics=topics):
                for topic_filter in topics:
                    session.subscriptions.pop(topic_filter, None)
                self._send(UnsubAck(packet_id))
            case PingReq():
                self._send(PingResp())
            case _:
                raise MqttProtocolError(f"unexpected {type(packet).__name__} from a client")

    def _on_publish(self, session: Session, packet: Publish) -> None:
        if not is_valid_topic_name(packet.topic):
            raise MqttProtocolError(f"invalid topic name {packet.topic!r} in PUBLISH")
        packet_id = packet.packet_id or 0
        # A resent QoS 2 PUBLISH awaiting PUBREL was already routed: only acknowledge it.
        if packet.qos < 2 or session.start_incoming_qos2(packet_id):
            self._router.publish(packet)
        if packet.qos == 1:
            self._send(PubAck(packet_id))
        elif packet.qos == 2:
            self._send(PubRec(packet_id))

    def _on_subscribe(self, session: Session, packet: Subscribe) -> None:
        granted: list[tuple[str, int]] = []
        codes: list[int] = []
        for topic_filter, qos in packet.topics:
            if is_valid_topic_filter(topic_filter):
                session.subscriptions[topic_filter] = qos
                granted.append((topic_filter, qos))
                codes.append(qos)
            else:
                logger.warning(
                    "refusing invalid topic filter client_id=%s filter=%r",
                    self.client_id,
                    topic_filter,
                )
                codes.append(SUBACK_FAILURE)
        self._send(SubAck(packet.packet_id, tuple(codes)))
        for topic_filter, qos in granted:
            self._router.deliver_retained(session, topic_filter, qos)

    def _send(self, packet: Packet) -> None:
        self._control.append(packet)
        self.wake()

    async def _write_loop(self, session: Session) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while packets := self._take_outgoing(session):
                    self._writer.write(b"".join(encode(packet) for packet in packets))
                    await self._writer.drain()
        except OSError as err:
            logger.info("write failed client_id=%s reason=%r", self.client_id, err)
            # Ending the transport ends the read loop too, which ends the connection.
            self._writer.transport.abort()

    def _take_outgoing(self, session: Session) -> list[Packet]:
        packets: list[Packet] = []
        while self._control and len(packets) < _WRITE_BATCH:
            packets.append(self._control.popleft())
        packets.extend(session.take_ready(_WRITE_BATCH - len(packets)))
        self._router.count_sent(sum(isinstance(packet, Publish) for packet in packets))
        return packets

    async def _send_now(self, packet: Packet) -> None:
        try:
            self._writer.write(encode(packet))
            await self._writer.drain()
        except OSError as err:
            logger.info("write failed client_id=%s reason=%r", self.client_id, err)

    async def _close(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.wait_closed()
        except OSError:
            # Also TimeoutError: a peer that stopped reading must not hold the close open.
            self._writer.transport.abort()

    def _warn(self, reason: str) -> None:
        logger.warning(
            "closing connection client_id=%s peer=%s reason=%s", self.client_id, self._peer, reason
        )
