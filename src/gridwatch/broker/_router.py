"""The broker's shared state: sessions by client id, retained messages, fan-out and counters."""

import dataclasses
import logging

from gridwatch.broker._packets import Publish, Will
from gridwatch.broker._session import Enqueued, Session
from gridwatch.broker._topics import topic_matches

logger = logging.getLogger("gridwatch.broker")


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerStats:
    """A snapshot of the broker's counters."""

    connected_clients: int
    # Connected clients plus persistent sessions kept for offline clients.
    sessions: int
    retained_messages: int
    # PUBLISHes routed (duplicates of an unreleased QoS 2 message excluded), wills included.
    messages_received: int
    # PUBLISHes handed to client sockets, resends included.
    messages_sent: int
    # Messages lost because a client's queue already held max_queued_messages.
    messages_dropped: int


class Router:
    """Routes published messages to the sessions whose subscriptions match."""

    def __init__(self, *, max_queued_messages: int) -> None:
        self._max_queued = max_queued_messages
        self._sessions: dict[str, Session] = {}
        self._retained: dict[str, Publish] = {}
        self._received = 0
        self._sent = 0
        self._dropped = 0

    def stats(self) -> BrokerStats:
        """Return a snapshot of the counters."""
        return BrokerStats(
            connected_clients=sum(session.online for session in self._sessions.values()),
            sessions=len(self._sessions),
            retained_messages=len(self._retained),
            messages_received=self._received,
            messages_sent=self._sent,
            messages_dropped=self._dropped,
        )

    def count_sent(self, count: int) -> None:
        """Count PUBLISH packets handed to a client's socket."""
        self._sent += count

    async def take_over(self, client_id: str, *, clean_session: bool) -> None:
        """Disconnect whichever connection serves client_id and wait until it has ended."""
        # Loop: while we waited, yet another connection may have claimed the same id.
        while (session := self._sessions.get(client_id)) is not None and session.link is not None:
            # The spec leaves the will on takeover open; like Mosquitto, publish it unless the
            # old and the new connection both keep the session (a plain reconnect).
            await session.link.kick(
                "taken over by a new connection with the same client id",
                publish_will=session.clean_session or clean_session,
            )

    def open_session(self, client_id: str, *, clean_session: bool) -> tuple[Session, bool]:
        """Resume or create the session for client_id; return it and whether it was resumed."""
        existing = self._sessions.get(client_id)
        if existing is not None and not clean_session:
            return existing, True
        session = Session(
            client_id, clean_session=clean_session, max_queued_messages=self._max_queued
        )
        self._sessions[client_id] = session
        return session, False

    def close_session(self, session: Session, will: Will | None) -> None:
        """Detach a session from its ended connection, then publish the will if one is due."""
        session.link = None
        if session.clean_session and self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]
        if will is not None:
            logger.info("publishing will client_id=%s topic=%s", session.client_id, will.topic)
            self.publish(Publish(will.topic, will.payload, will.qos, will.retain))

    def publish(self, message: Publish) -> None:
        """Store or clear the retained message if flagged, and queue message for subscribers."""
        self._received += 1
        topic = message.topic
        if message.retain and message.payload:
            self._retained[topic] = Publish(topic, message.payload, message.qos, retain=True)
        elif message.retain:
            self._retained.pop(topic, None)
        # Established subscriptions get retain=0 whatever the publisher sent [MQTT-3.3.1-9].
        outgoing = Publish(topic, message.payload, message.qos)
        for session in self._sessions.values():
            granted = session.granted_qos(topic)
            if granted is None:
                continue
            qos = min(granted, message.qos)
            # Like Mosquitto's default, QoS 0 messages are not queued for offline clients.
            if qos or session.online:
                self._offer(session, dataclasses.replace(outgoing, qos=qos))

    def deliver_retained(self, session: Session, topic_filter: str, granted_qos: int) -> None:
        """Queue the retained messages matching a new subscription, with the retain flag set."""
        for topic, retained in self._retained.items():
            if topic_matches(topic_filter, topic):
                qos = min(granted_qos, retained.qos)
                self._offer(session, dataclasses.replace(retained, qos=qos))

    def _offer(self, session: Session, publish: Publish) -> None:
        outcome = session.enqueue(publish)
        if outcome is Enqueued.QUEUED:
            if session.link is not None:
                session.link.wake()
            return
        self._dropped += 1
        if outcome is Enqueued.OVERFLOW_STARTED:
            logger.warning(
                "queue full, dropping messages client_id=%s max_queued_messages=%d online=%s",
                session.client_id,
                self._max_queued,
                session.online,
            )
