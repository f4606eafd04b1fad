"""The ingest pipeline on a real database: bad messages are counted and set aside, never fatal."""

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from gridwatch.adapters.mqtt import RawMessage
from gridwatch.cases.models import Case, OutboxEvent
from gridwatch.domain import Sensor, SensorStatus
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.pipeline import Accepted, IngestPipeline
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.gateway.rejects import RejectedMessage, RejectLog, RejectReason
from gridwatch.gateway.telemetry import MemoryTelemetryStore
from gridwatch.rules import RuleEngine, load_rule_files
from gridwatch.service.case_sink import DatabaseCaseSink
from tests.integration.factories import rain_sensor

RULE = """
rules:
  - id: burst
    title: "Rain at {sensor_id}: {value} mm"
    category: "event:0401"
    applies_to: {kinds: [rain_gauge]}
    condition: {type: threshold, field: rain_mm, levels: {blue: 2.0, red: 8.0}, clear: 0.5}
"""


@pytest.fixture
def pipeline(sessions, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    retired = Sensor.model_validate(
        rain_sensor("RG-OLD").model_dump() | {"status": SensorStatus.RETIRED}
    )
    metrics = Metrics()
    return IngestPipeline(
        topic_prefix="city/gw",
        registry=SensorRegistry([rain_sensor("RG-1"), retired]),
        store=MemoryTelemetryStore(),
        engine=RuleEngine(load_rule_files([rules])),
        cases=DatabaseCaseSink(sessions=sessions, metrics=metrics, on_committed=lambda: None),
        rejects=RejectLog(tmp_path / "rejected.jsonl"),
        metrics=metrics,
    )


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
    pipeline, tmp_path, topic, payload, reason, detail
):
    outcome = await pipeline.handle(_message(topic, payload))
    assert isinstance(outcome, RejectedMessage)
    assert outcome.reason is reason
    assert detail in outcome.detail
    good = await pipeline.handle(_message("city/gw/RG-1/telemetry", {"rain_mm": 0.4}))
    assert isinstance(good, Accepted)
    assert pipeline._store.recent("RG-1", 10)[-1].values == {"rain_mm": 0.4}
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
