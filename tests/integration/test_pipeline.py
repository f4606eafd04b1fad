"""The ingest pipeline on a real database: bad messages are counted and set aside, never fatal."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from gridwatch.adapters.mqtt import RawMessage
from gridwatch.cases.models import Case, OutboxEvent
from gridwatch.domain import Sensor, SensorStatus
from gridwatch.gateway.alarms import AlarmService
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.pipeline import Accepted, IngestPipeline
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.gateway.rejects import RejectedMessage, RejectLog, RejectReason
from gridwatch.gateway.telemetry import LatestReadings, ReadingsQuery
from gridwatch.registry.catalog import device_profiles
from gridwatch.rules import RulePack, load_rule_files
from gridwatch.service.case_sink import DatabaseCaseSink
from gridwatch.service.vendor_codecs import vendor_codecs
from tests.integration.factories import rain_sensor
from tests.telemetry.support import embedded_telemetry

RULE = """
rules:
  - id: burst
    title: "Rain at {sensor_id}: {value} mm"
    category: "event:0401"
    applies_to: {kinds: [rain_gauge]}
    condition: {type: threshold, field: rain_mm, levels: {blue: 2.0, red: 8.0}, clear: 0.5}
"""


@pytest.fixture
async def telemetry(tmp_path):
    async with embedded_telemetry(tmp_path) as running:
        yield running


@pytest.fixture
def pipeline(sessions, tmp_path, telemetry):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    retired = Sensor.model_validate(
        rain_sensor("RG-OLD").model_dump() | {"status": SensorStatus.RETIRED}
    )
    metrics = Metrics()
    registry = SensorRegistry([rain_sensor("RG-1"), retired])
    return IngestPipeline(
        topic_prefix="city/gw",
        registry=registry,
        writer=telemetry.writer,
        latest=LatestReadings(),
        alarms=_alarms(sessions, metrics, registry, load_rule_files([rules])),
        rejects=RejectLog(tmp_path / "rejected.jsonl"),
        metrics=metrics,
    )


def _alarms(sessions, metrics, registry, rules):
    sink = DatabaseCaseSink(sessions=sessions, metrics=metrics, on_committed=lambda: None)
    return AlarmService(rules=rules, registry=registry, cases=sink, metrics=metrics)


def _message(topic: str, payload: object) -> RawMessage:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return RawMessage(topic=topic, payload=raw, received_at=datetime.now(UTC))


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "detail"),
    [
        ("city/gw/RG-1/telemetry", b"{not json", RejectReason.BAD_PAYLOAD, "not valid JSON"),
        ("city/gw/RG-1/telemetry", {"rain_mm": "lots"}, RejectReason.BAD_PAYLOAD, "rain_mm"),
        ("city/gw/RG-1/telemetry", {"rain_mm": -3}, RejectReason.BAD_PAYLOAD, "minimum"),
        (
            "city/gw/NOPE/telemetry",
            {"rain_mm": 1},
            RejectReason.UNKNOWN_SENSOR,
            "no sensor registered",
        ),
        ("city/gw/RG-OLD/telemetry", {"rain_mm": 1}, RejectReason.SENSOR_RETIRED, "retired"),
        ("city/gw/RG-1/gossip", {"rain_mm": 1}, RejectReason.BAD_TOPIC, "unknown channel"),
        ("city/gw/RG-1", {"rain_mm": 1}, RejectReason.BAD_TOPIC, "expected"),
        ("other/gw/RG-1/telemetry", {"rain_mm": 1}, RejectReason.BAD_TOPIC, "expected"),
        ("city/gw/-bad/telemetry", {"rain_mm": 1}, RejectReason.BAD_TOPIC, "invalid sensor id"),
    ],
)
async def test_bad_message_is_set_aside_and_the_next_good_one_is_stored(
    pipeline, telemetry, tmp_path, topic, payload, reason, detail
):
    outcome = await pipeline.handle(_message(topic, payload))
    assert isinstance(outcome, RejectedMessage)
    assert outcome.reason is reason
    assert detail in outcome.detail
    good = await pipeline.handle(_message("city/gw/RG-1/telemetry", {"rain_mm": 0.4}))
    assert isinstance(good, Accepted)
    now = datetime.now(UTC)
    stored = await telemetry.reader.readings(
        ReadingsQuery(
            sensor_id="RG-1",
            measurement="rain_gauge",
            start=now - timedelta(minutes=1),
            end=now + timedelta(minutes=1),
            limit=10,
        )
    )
    assert [row.values for row in stored] == [{"rain_mm": 0.4}]
    (line,) = (tmp_path / "rejected.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert (record["topic"], record["reason"]) == (topic, reason.value)
    assert pipeline._rejects.counts[reason] == 1


async def test_alarm_readings_open_one_case_and_write_the_outbox(pipeline, sessions):
    for value in (0.2, 3.0, 4.0, 9.5, 6.0):
        outcome = await pipeline.handle(_message("city/gw/RG-1/telemetry", {"rain_mm": value}))
        assert isinstance(outcome, Accepted)
    async with sessions() as session:
        cases = (await session.scalars(select(Case))).all()
        events = await session.scalar(select(func.count()).select_from(OutboxEvent))
    assert len(cases) == 1
    assert (cases[0].severity, cases[0].occurrences) == ("red", 4)
    assert events == 2  # opened, escalated; repeats only count


@pytest.fixture
def vendor_pipeline(sessions, tmp_path, telemetry):
    elevator = Sensor.model_validate(
        {"id": "EL-1", "kind": "elevator", "grid": "110101001001001",
         "protocol": {"type": "mqtt", "codec": "traction-controller"}}
    )  # fmt: skip
    metrics = Metrics()
    registry = SensorRegistry([elevator])
    return IngestPipeline(
        topic_prefix="gridwatch",
        registry=registry,
        writer=telemetry.writer,
        latest=LatestReadings(),
        alarms=_alarms(sessions, metrics, registry, RulePack(())),
        rejects=RejectLog(tmp_path / "rejected.jsonl"),
        metrics=metrics,
        vendor_codecs=vendor_codecs(device_profiles()),
    )


@pytest.mark.parametrize(
    ("channel", "vendor", "canonical"),
    [
        ("telemetry",
         {"flr": 5, "dir": 1, "door": 0, "run": True, "dz": True, "mode": 1, "spd": 150},
         {"floor": 5, "direction": "up", "door": "closed", "moving": True, "in_door_zone": True,
          "mode": "inspection", "speed_ms": 1.5}),
        ("event", {"err": 17}, {"fault": "entrapment", "code": "17"}),
    ],
)  # fmt: skip
async def test_vendor_payloads_are_mapped_by_their_codec(
    vendor_pipeline, channel, vendor, canonical
):
    outcome = await vendor_pipeline.handle(_message(f"gridwatch/EL-1/{channel}", vendor))
    assert isinstance(outcome, Accepted)
    assert outcome.reading.values == canonical


async def test_an_unknown_vendor_fault_code_is_set_aside_naming_it(vendor_pipeline):
    outcome = await vendor_pipeline.handle(_message("gridwatch/EL-1/event", {"err": 99}))
    assert isinstance(outcome, RejectedMessage)
    assert outcome.detail == "err: unknown fault code '99' for traction-controller"


class BrokenAlarms(AlarmService):
    """An alarm service with a bug that one particular value trips."""

    def evaluate(self, sensor, reading):
        if reading.values.get("rain_mm") == 6.66:
            raise ZeroDivisionError("division by zero")
        return super().evaluate(sensor, reading)


async def test_a_bug_tripped_by_one_message_sets_it_aside_and_ingest_goes_on(
    sessions, tmp_path, telemetry
):
    metrics = Metrics()
    registry = SensorRegistry([rain_sensor("RG-1")])
    sink = DatabaseCaseSink(sessions=sessions, metrics=metrics, on_committed=lambda: None)
    pipeline = IngestPipeline(
        topic_prefix="gridwatch",
        registry=registry,
        writer=telemetry.writer,
        latest=LatestReadings(),
        alarms=BrokenAlarms(rules=RulePack(()), registry=registry, cases=sink, metrics=metrics),
        rejects=RejectLog(tmp_path / "rejected.jsonl"),
        metrics=metrics,
    )
    poison = await pipeline.handle(_message("gridwatch/RG-1/telemetry", {"rain_mm": 6.66}))
    assert isinstance(poison, RejectedMessage)
    assert (poison.reason, poison.detail) == (
        RejectReason.INTERNAL_ERROR, "ZeroDivisionError: division by zero",
    )  # fmt: skip
    assert isinstance(
        await pipeline.handle(_message("gridwatch/RG-1/telemetry", {"rain_mm": 0.1})), Accepted
    )
    assert "internal_error" in (tmp_path / "rejected.jsonl").read_text()
