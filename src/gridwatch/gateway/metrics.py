"""Prometheus metrics, one registry per service instance so tests can build many."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_MODBUS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
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
        self.case_failures = Counter(
            "gridwatch_case_failures",
            "Alarm events not applied to cases for an error other than the store being out",
            registry=r,
        )
        self.deliveries = Counter(
            "gridwatch_webhook_attempts", "Webhook delivery attempts, by outcome", ["outcome"],
            registry=r,
        )  # fmt: skip
        self.ingest_seconds = Histogram(
            "gridwatch_ingest_seconds",
            "Handling one batch of messages: decode, evaluate, commit its cases",
            registry=r, buckets=_INGEST_BUCKETS,
        )  # fmt: skip
        self.mqtt_connected = Gauge(
            "gridwatch_mqtt_connected", "1 while the gateway is connected to the broker",
            registry=r,
        )  # fmt: skip
        self.ingest_batch_size = Histogram(
            "gridwatch_ingest_batch_messages", "MQTT messages handled together in one batch",
            registry=r, buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
        )  # fmt: skip
        self.telemetry_points_written = Counter(
            "gridwatch_telemetry_points_written", "Points written to the telemetry store",
            registry=r,
        )  # fmt: skip
        self.telemetry_points_spooled = Counter(
            "gridwatch_telemetry_points_spooled",
            "Points put in the disk spool because the store was unavailable", registry=r,
        )  # fmt: skip
        self.telemetry_points_dropped = Counter(
            "gridwatch_telemetry_points_dropped",
            "Points dropped from a full spool (the oldest go first)", registry=r,
        )  # fmt: skip
        self.telemetry_points_rejected = Counter(
            "gridwatch_telemetry_points_rejected",
            "Points the store refused (4xx), set aside with its reason", registry=r,
        )  # fmt: skip
        self.telemetry_batch_seconds = Histogram(
            "gridwatch_telemetry_batch_seconds", "Time to write one batch to the store",
            registry=r, buckets=_BATCH_BUCKETS,
        )  # fmt: skip
        self.telemetry_store_up = Gauge(
            "gridwatch_telemetry_store_up", "1 while the telemetry store takes writes",
            registry=r,
        )  # fmt: skip
        self.telemetry_store_up.set(1)
        self.telemetry_spool_bytes = Gauge(
            "gridwatch_telemetry_spool_bytes", "Bytes waiting in the disk spool", registry=r
        )
        self.telemetry_spool_batches = Gauge(
            "gridwatch_telemetry_spool_batches", "Batches waiting in the disk spool", registry=r
        )
        self.telemetry_spool_age_seconds = Gauge(
            "gridwatch_telemetry_spool_age_seconds", "Age of the oldest batch in the disk spool",
            registry=r,
        )  # fmt: skip
        self.modbus_polls = Counter(
            "gridwatch_modbus_polls", "Modbus polls that produced a reading", registry=r
        )
        self.modbus_poll_failures = Counter(
            "gridwatch_modbus_poll_failures", "Modbus polls that failed, by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.modbus_poll_seconds = Histogram(
            "gridwatch_modbus_poll_seconds", "Time to read one device's register map",
            registry=r, buckets=_MODBUS_BUCKETS,
        )  # fmt: skip
        self.modbus_schedule_lag_seconds = Histogram(
            "gridwatch_modbus_schedule_lag_seconds",
            "How late a poll started against its tick on the interval's grid",
            registry=r, buckets=_MODBUS_BUCKETS,
        )  # fmt: skip
        self.modbus_devices = Gauge(
            "gridwatch_modbus_devices", "Modbus devices being polled", registry=r
        )
