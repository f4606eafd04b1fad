"""Writing line protocol to InfluxDB 2 (`/api/v2/write`, token, org, bucket) with influxdb-client.

The client makes one attempt per call: its urllib3 retries are off and the write API is
synchronous (only the library's batching mode retries), because the batching writer owns the
retry policy and the spool. influxdb-client compresses the body itself when gzip is enabled,
so a gzipped batch is decompressed here and compressed again by the library.
"""

import asyncio
import gzip
import zlib
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import urllib3.exceptions
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from gridwatch.domain.backoff import parse_retry_after
from gridwatch.gateway.telemetry.errors import PointsRejected, StoreUnavailable

DEFAULT_TIMEOUT_S = 10.0
_MAX_REASON_CHARS = 500  # InfluxDB echoes the offending line; keep logs and exceptions bounded
# 408 is the server giving up waiting for us: a timeout, not a verdict on the points.
# 401/403/404 are a wrong token or a missing bucket: a configuration to fix, not bad points,
# so the data waits in the spool until it is fixed instead of being set aside.
_TRANSIENT_4XX = frozenset({401, 403, 404, 408, 429})


class InfluxV2Client:
    """Writes pre-formatted line protocol batches to one InfluxDB 2 bucket."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        org: str,
        bucket: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"InfluxDB url must be http:// or https://, got {url!r}")
        for name, value in (("token", token), ("org", org), ("bucket", bucket)):
            if not value:
                raise ValueError(f"InfluxDB {name} must not be empty")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._url = url
        self._org = org
        self._bucket = bucket
        self._client = InfluxDBClient(
            url=url,
            token=token,
            org=org,
            timeout=timeout_s * 1000,  # milliseconds, the whole request
            enable_gzip=True,
            retries=False,  # urllib3: no retries, no redirects; our writer retries
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    @property
    def url(self) -> str:
        """The InfluxDB base URL."""
        return self._url

    async def write(self, body: bytes, *, gzipped: bool) -> None:
        """Write one batch; raises StoreUnavailable (try later) or PointsRejected (never)."""
        await asyncio.to_thread(self._write_blocking, body, gzipped)

    async def ping(self) -> bool:
        """Whether InfluxDB answers GET /ping now."""
        # influxdb-client's ping() answers False for any failure rather than raising.
        reachable: bool = await asyncio.to_thread(self._client.ping)
        return reachable

    def close(self) -> None:
        """Close the connection pool."""
        # The synchronous write API holds no resources of its own; the client owns the pool.
        self._client.close()  # type: ignore[no-untyped-call]  # unannotated in influxdb-client

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write_blocking(self, body: bytes, gzipped: bool) -> None:
        try:
            # Decompressed in this thread, not on the event loop: batches can be megabytes.
            lines = gzip.decompress(body) if gzipped else body
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"batch body is not valid gzip: {err}") from err
        try:
            self._write_api.write(
                bucket=self._bucket,
                org=self._org,
                record=lines,
                # The library annotates WritePrecision but defines its members as plain str.
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except ApiException as err:
            raise _translate_response(err) from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            # With retries off urllib3 raises the cause itself: refused, reset, timed out.
            raise StoreUnavailable(f"InfluxDB at {self._url} unreachable: {err}") from err


def _translate_response(err: ApiException) -> StoreUnavailable | PointsRejected:
    """Map an HTTP error answer (or the library's TLS failure, status 0) to our errors."""
    status = err.status or 0
    reason = str(err.message)[:_MAX_REASON_CHARS]
    if 400 <= status < 500 and status not in _TRANSIENT_4XX:
        return PointsRejected(status, reason)
    # 5xx, 408, 429, and also a redirect (not followed with retries off) or a TLS failure:
    # neither is the points' fault, so they wait in the spool rather than being dropped.
    return StoreUnavailable(
        f"InfluxDB answered {status or 'nothing'}: {reason}",
        retry_after=parse_retry_after(err.retry_after, now=datetime.now(UTC)),
    )
