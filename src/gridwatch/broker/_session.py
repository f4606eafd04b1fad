"""Per-client session state: subscriptions, the outgoing queue and QoS 1/2 flows (no I/O)."""

import collections
import dataclasses
import enum
from typing import Protocol

from gridwatch.broker._packets import Publish, PubRel
from gridwatch.broker._topics import topic_matches

# Mosquitto's default max_inflight_messages: bounds unacknowledged QoS 1/2 messages per client.
DEFAULT_MAX_INFLIGHT = 20


class Enqueued(enum.Enum):
    """What happened to a message offered to a session's queue."""

    QUEUED = enum.auto()
    DROPPED = enum.auto()
    # The first drop after the queue had room, so callers warn once per overflow, not per message.
    OVERFLOW_STARTED = enum.auto()


class Link(Protocol):
    """The connection currently serving a session."""

    def wake(self) -> None:
        """Tell the connection there is something to send."""

    async def kick(self, reason: str, *, publish_will: bool) -> None:
        """Close the connection from the broker's side and wait until it has ended."""


class Session:
    """The state the broker keeps for one client id, whether or not it is connected."""

    def __init__(
        self,
        client_id: str,
        *,
        clean_session: bool,
        max_queued_messages: int,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
    ) -> None:
        if not 0 < max_inflight < 0xFFFF:
            raise ValueError(f"max_inflight must be in 1..65534, got {max_inflight}")
        self.client_id = client_id
        self.clean_session = clean_session
        self.subscriptions: dict[str, int] = {}
        self.dropped = 0
        self.link: Link | None = None
        self._max_queued = max_queued_messages
        self._max_inflight = max_inflight
        self._pending: collections.deque[Publish] = collections.deque()
        # Outgoing QoS 1/2 messages awaiting their ack, in send order; a PubRel once PUBREC came.
        self._inflight: dict[int, Publish | PubRel] = {}
        # Incoming QoS 2 packet ids delivered onward and awaiting PUBREL (spec method A).
        self._incoming_qos2: set[int] = set()
        self._last_packet_id = 0
        self._overflowing = False

    @property
    def online(self) -> bool:
        """Whether a connection currently serves this session."""
        return self.link is not None

    @property
    def queued(self) -> int:
        """Messages waiting to be sent (not yet in flight)."""
        return len(self._pending)

    @property
    def inflight(self) -> int:
        """Messages sent and not yet fully acknowledged."""
        return len(self._inflight)

    def granted_qos(self, topic: str) -> int | None:
        """Return the highest QoS of this session's filters matching topic, or None."""
        matching = [qos for flt, qos in self.subscriptions.items() if topic_matches(flt, topic)]
        return max(matching, default=None)

    def enqueue(self, publish: Publish) -> Enqueued:
        """Queue a message (without packet id) for delivery, unless the queue is full."""
        if len(self._pending) >= self._max_queued:
            self.dropped += 1
            if self._overflowing:
                return Enqueued.DROPPED
            self._overflowing = True
            return Enqueued.OVERFLOW_STARTED
        self._pending.append(publish)
        return Enqueued.QUEUED

    def take_ready(self, limit: int) -> list[Publish]:
        """Move up to limit queued messages into flight, assigning packet ids, and return them."""
        ready: list[Publish] = []
        while self._pending and len(ready) < limit:
            head = self._pending[0]
            if head.qos and len(self._inflight) >= self._max_inflight:
                break
            self._pending.popleft()
            if head.qos:
                packet_id = self._allocate_packet_id()
                head = dataclasses.replace(head, packet_id=packet_id)
                self._inflight[packet_id] = head
            ready.append(head)
        if len(self._pending) < self._max_queued:
            self._overflowing = False
        return ready

    def resend(self) -> list[Publish | PubRel]:
        """Return every in-flight packet to send again on reconnect, PUBLISHes marked DUP."""
        return [
            dataclasses.replace(packet, dup=True) if isinstance(packet, Publish) else packet
            for packet in self._inflight.values()
        ]

    def acknowledge(self, packet_id: int) -> None:
        """Handle PUBACK: a QoS 1 delivery is done."""
        packet = self._inflight.get(packet_id)
        if isinstance(packet, Publish) and packet.qos == 1:
            del self._inflight[packet_id]

    def received(self, packet_id: int) -> PubRel | None:
        """Handle PUBREC: return the PUBREL to send, or None for an unknown packet id."""
        packet = self._inflight.get(packet_id)
        if packet is None or (isinstance(packet, Publish) and packet.qos != 2):
            return None
        release = PubRel(packet_id)
        self._inflight[packet_id] = release
        return release

    def complete(self, packet_id: int) -> None:
        """Handle PUBCOMP: a QoS 2 delivery is done."""
        if isinstance(self._inflight.get(packet_id), PubRel):
            del self._inflight[packet_id]

    def start_incoming_qos2(self, packet_id: int) -> bool:
        """Record an incoming QoS 2 PUBLISH; return False if it is a duplicate already routed."""
        if packet_id in self._incoming_qos2:
            return False
        self._incoming_qos2.add(packet_id)
        return True

    def release_incoming_qos2(self, packet_id: int) -> None:
        """Handle PUBREL: the packet id may be reused by the client."""
        self._incoming_qos2.discard(packet_id)

    def _allocate_packet_id(self) -> int:
        # In flight is bounded far below 65535, so a free id is always found quickly.
        packet_id = self._last_packet_id
        while True:
            packet_id = packet_id % 0xFFFF + 1
            if packet_id not in self._inflight:
                self._last_packet_id = packet_id
                return packet_id
