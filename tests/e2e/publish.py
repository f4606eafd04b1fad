"""A paho-based QoS 1 publisher: returns only once the broker has acknowledged every message."""

import json
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

PUBLISH_TIMEOUT_S = 10.0


def publish_all(host: str, port: int, messages: list[tuple[str, object]]) -> None:
    """Publish (topic, payload) pairs in order; bytes go as they are, anything else as JSON."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"e2e-pub-{uuid.uuid4().hex}"
    )
    client.connect(host, port)
    client.loop_start()
    try:
        for topic, payload in messages:
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            info = client.publish(topic, raw, qos=1)
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
            if not info.is_published():
                raise TimeoutError(f"broker did not acknowledge {topic}")
    finally:
        client.disconnect()
        client.loop_stop()
