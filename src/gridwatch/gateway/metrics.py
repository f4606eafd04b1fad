"""Prometheus metrics, one registry per service instance so tests can build many."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_INGEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)


class Metrics:
    """Every metric gridwatch exports, registered in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.readings = Counter(
            "gridwatch_readings", "Readings accepted and stored", ["kind", "channel"], registry=r
        )
        self.rejected = Counter(
            "gridwatch_messages_rejected", "MQTT messages set aside, by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.alarms = Counter(
            "gridwatch_alarm_events", "Alarm events from the rules engine", ["transition"],
            registry=r,
        )  # fmt: skip
        self.case_events = Counter(
            "gridwatch_case_events", "Case events written to the outbox", ["type"], registry=r
        )
        self.deliveries = Counter(
            "gridwatch_webhook_attempts", "Webhook delivery attempts, by outcome", ["outcome"],
            registry=r,
        )  # fmt: skip
        self.ingest_seconds = Histogram(
            "gridwatch_ingest_seconds", "From MQTT message to stored reading and updated cases",
            registry=r, buckets=_INGEST_BUCKETS,
        )  # fmt: skip
        self.mqtt_connected = Gauge(
            "gridwatch_mqtt_connected", "1 while the gateway is connected to the broker",
            registry=r,
        )  # fmt: skip
