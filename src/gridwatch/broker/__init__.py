"""An embedded asyncio MQTT 3.1.1 broker, so the demo and the tests need no Mosquitto.

Supported: protocol level 4 only (other levels get CONNACK return code 1); QoS 0, 1 and 2 in
both directions; retained messages; `+` and `#` wildcards; last wills; persistent sessions
(clean session 0) with queued messages and resend of unacknowledged ones on reconnect;
client-id takeover (the old connection's will is published unless both connections keep the
session, as Mosquitto does); keepalive enforced at 1.5 x the client's keepalive; overlapping
subscriptions of one client deliver a message once, at the highest granted QoS; per-client
queues bounded by max_queued_messages (drops counted in `stats`, warned once per overflow),
with at most 20 unacknowledged messages in flight per client.

Not supported, by design: authentication and authorisation (credentials are ignored, so it
binds to loopback by default), TLS, WebSockets, MQTT 5, $SYS topics, and persistence across
restarts (sessions and retained messages live in memory only). Production deployments use
Mosquitto with persistence.
"""

from gridwatch.broker._broker import EmbeddedBroker
from gridwatch.broker._codec import encode as encode_packet
from gridwatch.broker._packets import Connect, Disconnect, PingReq, Subscribe
from gridwatch.broker._router import BrokerStats

# The packet codec is public too: the gateway's lean subscriber (adapters.mqtt_wire) encodes
# its few client packets with it rather than with a second implementation.
__all__ = [
    "BrokerStats",
    "Connect",
    "Disconnect",
    "EmbeddedBroker",
    "PingReq",
    "Subscribe",
    "encode_packet",
]
