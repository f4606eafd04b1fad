"""InfluxV2Client against a real HTTP server that records what influxdb-client sends."""

import gzip
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import pytest_asyncio

from gridwatch.gateway.telemetry.errors import PointsRejected, StoreUnavailable
from gridwatch.gateway.telemetry.influx_v2 import InfluxV2Client
from tests.servers.ports import free_port
from tests.servers.recording_http import RecordingHTTPServer

TOKEN = "s3cret-token"
ORG = "grid ops"  # a space, so the query string's encoding is asserted too
BUCKET = "telemetry"
LINES = (
    b"rain_gauge,sensor_id=rg-001,grid=A1 rain_mm=0.2 1700000000000000000\n"
    b"rain_gauge,sensor_id=rg-002,grid=A1 rain_mm=1.4 1700000000000000001"
)
TIMEOUT_S = 0.5


@pytest.fixture
def influx() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest_asyncio.fixture
async def client(influx: RecordingHTTPServer) -> AsyncIterator[InfluxV2Client]:
    async with InfluxV2Client(
        url=influx.url, token=TOKEN, org=ORG, bucket=BUCKET, timeout_s=TIMEOUT_S
    ) as client:
        yield client


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


@pytest.mark.parametrize(
    ("body", "gzipped"), [(gzip.compress(LINES), True), (LINES, False)], ids=["gzipped", "plain"]
)
async def test_write_sends_one_gzipped_line_protocol_post(client, influx, body, gzipped):
    await client.write(body, gzipped=gzipped)

    [request] = influx.requests
    assert request.method == "POST"
    assert request.path == "/api/v2/write"
    assert request.query_string == "org=grid+ops&bucket=telemetry&precision=ns"
    assert request.headers["authorization"] == f"Token {TOKEN}"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "text/plain"
    # Compressed exactly once on the wire, whatever form the batch came in.
    assert request.raw_body[:2] == b"\x1f\x8b"
    assert request.body == LINES


async def test_rejected_points_carry_influxdbs_message(client, influx):
    message = "unable to parse 'rain_gauge rain_mm=': missing field value"
    influx.answer_next(1, status=400, body=_error_body("invalid", message))

    with pytest.raises(PointsRejected) as caught:
        await client.write(LINES, gzipped=False)

    assert caught.value.status == 400
    assert caught.value.reason == message


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_wrong_token_or_missing_bucket_keeps_the_points_waiting(client, influx, status):
    influx.answer_next(1, status=status, body=_error_body("x", f"refused with {status}"))

    with pytest.raises(StoreUnavailable, match=f"refused with {status}"):
        await client.write(LINES, gzipped=False)


@pytest.mark.parametrize("status", [413, 422])
async def test_other_client_errors_reject_the_points(client, influx, status):
    influx.answer_next(1, status=status, body=_error_body("x", f"refused with {status}"))

    with pytest.raises(PointsRejected) as caught:
        await client.write(LINES, gzipped=False)

    assert (caught.value.status, caught.value.reason) == (status, f"refused with {status}")


async def test_a_non_json_error_body_is_the_reason(client, influx):
    influx.answer_next(1, status=400, body=b"<html>bad request from a proxy</html>")

    with pytest.raises(PointsRejected) as caught:
        await client.write(LINES, gzipped=False)

    assert caught.value.reason == "<html>bad request from a proxy</html>"


@pytest.mark.parametrize("status", [429, 503])
async def test_busy_store_is_unavailable_with_retry_after(client, influx, status):
    influx.answer_next(
        1, status=status, body=_error_body("unavailable", "busy"), headers={"Retry-After": "30"}
    )

    with pytest.raises(StoreUnavailable) as caught:
        await client.write(LINES, gzipped=False)

    assert caught.value.retry_after == 30.0
    assert "busy" in caught.value.reason
    # The library must not retry: our batching writer owns the retry policy.
    assert len(influx.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_server_errors_are_unavailable_without_retry(client, influx, status):
    influx.answer_next(1, status=status, body=_error_body("internal error", "boom"))

    with pytest.raises(StoreUnavailable) as caught:
        await client.write(LINES, gzipped=False)

    assert caught.value.retry_after is None
    assert len(influx.requests) == 1


async def test_a_redirect_is_not_followed_and_not_a_rejection(client, influx):
    influx.answer_next(1, status=307, headers={"Location": f"{influx.url}/elsewhere"})

    with pytest.raises(StoreUnavailable, match="307"):
        await client.write(LINES, gzipped=False)

    assert len(influx.requests) == 1


async def test_retry_after_as_http_date(client, influx):
    when = datetime.now(UTC) + timedelta(seconds=120)
    influx.answer_next(1, status=503, headers={"Retry-After": format_datetime(when, usegmt=True)})

    with pytest.raises(StoreUnavailable) as caught:
        await client.write(LINES, gzipped=False)

    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


async def test_nothing_listening_is_unavailable():
    url = f"http://127.0.0.1:{free_port()}"
    async with InfluxV2Client(
        url=url, token=TOKEN, org=ORG, bucket=BUCKET, timeout_s=TIMEOUT_S
    ) as client:
        with pytest.raises(StoreUnavailable) as caught:
            await client.write(LINES, gzipped=False)

    assert caught.value.retry_after is None
    assert "refused" in caught.value.reason.lower()


async def test_a_slow_store_times_out_once_as_unavailable(client, influx):
    influx.answer_next(1, status=204, delay_s=10)
    started = time.monotonic()

    with pytest.raises(StoreUnavailable) as caught:
        await client.write(LINES, gzipped=False)

    assert time.monotonic() - started < TIMEOUT_S + 2
    assert "timed out" in caught.value.reason
    assert len(influx.requests) == 1


async def test_the_client_works_again_after_a_failure(client, influx):
    influx.answer_next(1, status=503)
    with pytest.raises(StoreUnavailable):
        await client.write(LINES, gzipped=False)

    await client.write(LINES, gzipped=False)

    assert [r.body for r in influx.requests] == [LINES, LINES]


async def test_a_corrupt_gzip_body_is_a_value_error_not_a_store_error(client, influx):
    with pytest.raises(ValueError, match="not valid gzip"):
        await client.write(b"\x1f\x8b not really gzip", gzipped=True)

    assert influx.requests == []


async def test_ping_asks_the_ping_endpoint(client, influx):
    assert await client.ping() is True

    [request] = influx.requests
    assert (request.method, request.path) == ("GET", "/ping")


async def test_ping_is_false_when_the_store_fails(client, influx):
    influx.answer_next(1, status=503)

    assert await client.ping() is False


async def test_ping_is_false_when_nothing_listens():
    url = f"http://127.0.0.1:{free_port()}"
    async with InfluxV2Client(
        url=url, token=TOKEN, org=ORG, bucket=BUCKET, timeout_s=TIMEOUT_S
    ) as client:
        assert await client.ping() is False


@pytest.mark.parametrize(
    "overrides",
    [
        {"url": "localhost:8086"},
        {"token": ""},
        {"org": ""},
        {"bucket": ""},
        {"timeout_s": 0},
    ],
)
def test_constructor_validates(overrides):
    arguments = {
        "url": "http://localhost:8086",
        "token": TOKEN,
        "org": ORG,
        "bucket": BUCKET,
        "timeout_s": 1.0,
    }
    with pytest.raises(ValueError):  # noqa: PT011 - each argument has its own message
        InfluxV2Client(**(arguments | overrides))
