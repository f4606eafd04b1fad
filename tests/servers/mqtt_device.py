"""A paho-mqtt 2 test client that records what it receives, with bounded waits."""

import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.servers.mosquitto import MosquittoServer

TIMEOUT_S = 5.0


class Device:
    """A paho-mqtt 2 client over MQTT 3.1.1, QoS 1, recording what it receives."""

    def __init__(self, broker: MosquittoServer, username: str | None, password: str | None):
        self._broker = broker
        self._changed = threading.Condition()
        self._connack: ReasonCode | None = None
        self._suback: list[ReasonCode] | None = None
        self.received: list[tuple[str, bytes]] = []
        self.client_id = f"acl-test-{uuid.uuid4().hex[:10]}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def connect(self) -> ReasonCode:
        """Connect and return the CONNACK reason code, success or not."""
        self.client.connect(self._broker.host, self._broker.port, keepalive=30)
        self.client.loop_start()
        with self._changed:
            result = self._changed.wait_for(lambda: self._connack, TIMEOUT_S)
        assert result is not None, f"no CONNACK in {TIMEOUT_S} s; {self._broker.log_tail()}"
        return result

    def subscribe(self, *topics: str) -> list[ReasonCode]:
        """Subscribe at QoS 1 and return the SUBACK codes."""
        self._suback = None
        self.client.subscribe([(topic, 1) for topic in topics])
        with self._changed:
            codes = self._changed.wait_for(lambda: self._suback, TIMEOUT_S)
        assert codes is not None, f"no SUBACK in {TIMEOUT_S} s"
        return codes

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for PUBACK (3.1.1: denied publishes are acked too)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=TIMEOUT_S)
        assert info.is_published(), f"no PUBACK for {topic} in {TIMEOUT_S} s"

    def wait_for(self, payload: bytes) -> None:
        """Wait (bounded) until `payload` has arrived."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: self._has(payload), TIMEOUT_S)
        assert arrived, f"{payload!r} not received in {TIMEOUT_S} s; got {self.received}"

    def close(self) -> None:
        """Disconnect and stop the network loop."""
        self.client.disconnect()
        self.client.loop_stop()

    def _has(self, payload: bytes) -> bool:
        return any(body == payload for _, body in self.received)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any):
        with self._changed:
            self._connack = rc
            self._changed.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any):
        with self._changed:
            self._suback = list(codes)
            self._changed.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.received.append((message.topic, bytes(message.payload)))
            self._changed.notify_all()
