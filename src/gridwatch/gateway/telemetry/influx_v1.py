"""InfluxDB's 1.x HTTP API (`/write`, `/query`, `/ping`), also served by 2.x and 3.x.

One attempt per call: the batching writer owns retries and the spool. Failures are translated
once, in `_send`: unreachable, timed out, 5xx, 3xx, 401, 403, 408 and 429 are `StoreUnavailable`
(with the Retry-After seconds when the server sent one); any other 4xx is `PointsRejected` with
InfluxDB's `error` text (404 on /write: the database does not exist). A statement InfluxDB
refuses inside a 200 answer (`database not found`, a type error) is `PointsRejected(400, …)`,
the status InfluxDB gives a query it cannot parse.

What InfluxDB 1.x (1.6) does with a batch holding bad lines: it writes the good lines and
answers 400 `partial write: <first problem> dropped=N`, N counting the lines refused for a field
type conflict or the key `time` (unparsable lines are refused too, but not counted). One
exception: when the batch is the first write into a new shard and itself holds one field with
two types, it answers 400 `field type conflict` and writes nothing at all. Either way,
retrying the same batch cannot succeed.

Reading back (`readings`) answers `ReadingsQuery` in InfluxQL. JSON cannot tell 2.0 from 2, so
values are typed with `SHOW FIELD KEYS`: a float field's values are floats, an integer field's
are ints; `mean` is always a float, `count` always an int, and `sum`, `max`, `min` keep the
field's type (InfluxDB sums integers as int64).
"""

import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx

from gridwatch.domain import Value
from gridwatch.domain.backoff import parse_retry_after
from gridwatch.gateway.telemetry.errors import PointsRejected, StoreUnavailable
from gridwatch.gateway.telemetry.lineprotocol import MAX_TIME_NS, MIN_TIME_NS
from gridwatch.gateway.telemetry.query import Aggregate, ReadingsQuery, Row, numeric_fields

__all__ = ["GZIP_LEVEL", "InfluxV1Client", "gzip_body", "quote_identifier", "quote_string"]

# Level 1: most of gzip's gain on line protocol (tag sets repeat) for a fraction of the CPU.
GZIP_LEVEL: Final = 1
_MAX_REASON_CHARS: Final = 500  # InfluxDB echoes the offending line; keep exceptions bounded
# Not a verdict on the points: the server gave up waiting (408), asks us to slow down (429),
# or refuses our credentials (401, 403), a configuration to fix while the points wait in the
# spool (as InfluxV2Client does). 404 stays a rejection: on /write it means "database not
# found", which the service answers by creating the database.
_TRANSIENT_4XX: Final = frozenset({401, 403, 408, 429})
_NUMERIC_TYPES: Final = frozenset({"float", "integer"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def gzip_body(body: bytes) -> bytes:
    """A /write body gzip-compressed at GZIP_LEVEL (once per batch, however often it is sent)."""
    return zlib.compress(body, GZIP_LEVEL, wbits=31)  # wbits=31: gzip framing, no mtime


def quote_identifier(name: str) -> str:
    """An InfluxQL identifier in double quotes, escaped."""
    return '"' + _escape_influxql(name).replace('"', '\\"') + '"'


def quote_string(text: str) -> str:
    """An InfluxQL string literal in single quotes, escaped."""
    return "'" + _escape_influxql(text).replace("'", "\\'") + "'"


def _escape_influxql(text: str) -> str:
    # InfluxQL's scanner reads NUL as the end of the query, so no quoting can carry it (line
    # protocol can: such names are written, but only wildcards and regexes reach them).
    if "\x00" in text:
        raise ValueError(f"InfluxQL cannot express a name or string with NUL: {text!r}")
    # A raw line break ends a quoted token; these are the escapes the scanner knows.
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class InfluxV1Client:
    """Writes line protocol to, and reads InfluxQL from, one InfluxDB database."""

    def __init__(
        self,
        *,
        url: str,
        database: str,
        http: httpx.AsyncClient,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        retention_policy: str | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"InfluxDB url must be http:// or https://, got {url!r}")
        if not database:
            raise ValueError("InfluxDB database must not be empty")
        if token is not None and (username is not None or password is not None):
            raise ValueError("give InfluxDB either a token or a username and password, not both")
        if (username is None) != (password is None):
            raise ValueError("InfluxDB username and password go together")
        self._url = url.rstrip("/")
        self._database = database
        self._http = http
        self._auth = httpx.BasicAuth(username, password) if username and password else None
        # 2.x and 3.x take their tokens this way on the 1.x-compatible endpoints.
        self._headers = {"Authorization": f"Token {token}"} if token else {}
        rp = {"rp": retention_policy} if retention_policy else {}
        self._write_params = {"db": database, "precision": "ns", **rp}
        self._query_params = {"db": database, "epoch": "ns", **rp}

    @property
    def url(self) -> str:
        """The InfluxDB base URL."""
        return self._url

    @property
    def database(self) -> str:
        """The database written to and read from."""
        return self._database

    async def write(self, body: bytes, *, gzipped: bool) -> None:
        """Write a line-protocol body, gzipped with `gzip_body` or plain (then gzipped here)."""
        await self._send(
            "POST",
            "/write",
            params=self._write_params,
            content=body if gzipped else gzip_body(body),
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
        )

    async def ping(self) -> bool:
        """Whether InfluxDB answers /ping now."""
        try:
            await self._send("GET", "/ping")
        except (StoreUnavailable, PointsRejected):
            return False
        return True

    async def create_database(self) -> None:
        """Create the database; InfluxDB treats an existing one as success."""
        # Without db=: the statement names the database, which need not exist yet.
        await self._statements(
            f"CREATE DATABASE {quote_identifier(self._database)}", params={"epoch": "ns"}
        )

    async def query(self, influxql: str) -> list[dict[str, Any]]:
        """Run InfluxQL; one result per statement (`series`: name, columns, values)."""
        return await self._statements(influxql, params=self._query_params)

    async def readings(self, query: ReadingsQuery) -> list[Row]:
        """Rows of one sensor with `ReadingsQuery`'s semantics (raw or aggregated)."""
        # The end is exclusive: one past InfluxDB's last time still includes that time.
        start, end = _time_ns(query.start), min(_time_ns(query.end), MAX_TIME_NS + 1)
        if query.every is not None and query.agg is None:
            raise ValueError("ReadingsQuery.every needs an aggregate (agg)")
        group_by = "" if query.every is None else f" GROUP BY time({_duration(query.every)})"
        where = (
            f"WHERE {quote_identifier('sensor_id')} = {quote_string(query.sensor_id)} "
            f"AND time >= {start} AND time < {end}"
        )
        source = quote_identifier(query.measurement)
        if query.limit <= 0 or start >= end:
            return []
        types = await self._field_types(query.measurement)
        if query.agg is None:
            fields = sorted(types)
            select = ", ".join(f"{quote_identifier(f)}::field" for f in fields)
            converters = [_converter(types[f]) for f in fields]
            tail = ""
        else:
            # The measurement's numeric fields that InfluxDB holds as numbers (a field it has
            # as a string would fail the whole statement).
            fields = [
                f
                for f in numeric_fields(query.measurement)
                if types.get(f, set()) and types[f] <= _NUMERIC_TYPES
            ]
            agg = query.agg.value
            select = ", ".join(
                f"{agg}({quote_identifier(f)}) AS {quote_identifier(f)}" for f in fields
            )
            converters = [_aggregate_converter(query.agg, types[f]) for f in fields]
            tail = f"{group_by} fill(none)" if group_by else ""
        if not fields:
            return []
        # Every name and literal in it went through quote_identifier or quote_string.
        statement = f"SELECT {select} FROM {source} {where}{tail}"  # noqa: S608
        results = await self.query(f"{statement} ORDER BY time DESC LIMIT {query.limit}")
        rows = _rows(results, fields, converters)
        # InfluxDB applies LIMIT to each aggregate on its own: a field absent from the newest
        # windows brings older windows of its own, so more than `limit` rows come back. The
        # newest `limit` windows are whole all the same (each field's own newest windows).
        del rows[query.limit :]
        if query.agg is not None and query.every is None:
            # One window, the whole range: stamped with its start, as the semantics say. A
            # lone selector (max or min of one field) would carry its point's time instead.
            rows = [Row(time=query.start.astimezone(UTC), values=row.values) for row in rows]
        rows.reverse()
        return rows

    async def _field_types(self, measurement: str) -> dict[str, set[str]]:
        """Field key -> its types in InfluxDB (more than one when shards disagree)."""
        try:
            results = await self.query(f"SHOW FIELD KEYS FROM {quote_identifier(measurement)}")
        except PointsRejected as err:
            # Nothing written yet (the first write creates the database): nothing to read.
            if "database not found" in err.reason:
                return {}
            raise
        types: dict[str, set[str]] = {}
        for series in results[0].get("series", ()) if results else ():
            for key, kind in series.get("values", ()):
                types.setdefault(key, set()).add(kind)
        return types

    async def _statements(
        self, influxql: str, *, params: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """POST /query and return its results, refusing any statement that failed."""
        # POST: CREATE and DROP need it, and a long SELECT does not fit a URL.
        response = await self._send("POST", "/query", params=params, data={"q": influxql})
        try:
            results: list[dict[str, Any]] = response.json()["results"]
        except (ValueError, KeyError, TypeError) as err:
            raise StoreUnavailable(f"InfluxDB at {self._url} answered no query results") from err
        for result in results:
            if "error" in result:
                raise PointsRejected(400, _bounded(str(result["error"])))
        return results

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request; every transport and HTTP failure is translated here and only here."""
        try:
            response = await self._http.request(
                method,
                self._url + path,
                params=params,
                content=content,
                data=data,
                headers={**self._headers, **(headers or {})},
                auth=self._auth or httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.RequestError as err:
            # Refused, reset, DNS, TLS, timed out: nothing says the points were wrong.
            kind = type(err).__name__
            raise StoreUnavailable(f"InfluxDB at {self._url}: {kind}: {err}") from err
        status = response.status_code
        if httpx.codes.is_success(status):
            return response
        reason = _bounded(_error_text(response))
        # 3xx too: redirects are not followed (a write must not land somewhere unexpected),
        # and a misplaced URL is not the points' fault either.
        if not httpx.codes.is_client_error(status) or status in _TRANSIENT_4XX:
            raise StoreUnavailable(
                f"InfluxDB at {self._url} answered {status}: {reason}",
                retry_after=parse_retry_after(
                    response.headers.get("Retry-After"), now=datetime.now(UTC)
                ),
            )
        raise PointsRejected(status, reason)


def _error_text(response: httpx.Response) -> str:
    """InfluxDB's JSON `error`, else its X-Influxdb-Error header, else the body as text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    header = response.headers.get("X-Influxdb-Error")
    if header:
        return str(header)
    return response.text.strip() or response.reason_phrase


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"


def _time_ns(moment: datetime) -> int:
    """Integer nanoseconds since the epoch, clamped to int64 around InfluxDB's range."""
    if moment.tzinfo is None:
        raise ValueError(f"ReadingsQuery times must be timezone-aware, got {moment}")
    nanoseconds = (moment - _EPOCH) // _MICROSECOND * 1_000
    return min(max(nanoseconds, MIN_TIME_NS), MAX_TIME_NS + 1)


def _duration(every: timedelta) -> str:
    """A GROUP BY time() duration: whole microseconds, InfluxQL's `u` unit."""
    micros = every // _MICROSECOND
    if micros <= 0:
        raise ValueError(f"ReadingsQuery.every must be positive, got {every}")
    return f"{micros}u"


def _as_float(value: Any) -> Any:
    # JSON writes a float with an integral value (2.0) as 2; bool is left as it is.
    return float(value) if type(value) is int else value


def _as_int(value: Any) -> Any:
    return int(value) if type(value) is float and value.is_integer() else value


def _same(value: Any) -> Any:
    return value


def _converter(types: set[str]) -> Callable[[Any], Any]:
    """How to type a raw value of a field InfluxDB holds with these types."""
    if types == {"float"}:
        return _as_float
    return _same  # integer, string, boolean come back typed; mixed types stay as sent


def _aggregate_converter(agg: Aggregate, types: set[str]) -> Callable[[Any], Any]:
    """How to type an aggregate of a field InfluxDB holds with these numeric types."""
    if agg is Aggregate.MEAN:
        return _as_float
    if agg is Aggregate.COUNT:
        return _as_int
    # sum, max and min keep the field's type; across shards of both types InfluxDB adds floats.
    return _as_int if types == {"integer"} else _as_float


def _rows(
    results: list[dict[str, Any]],
    fields: list[str],
    converters: list[Callable[[Any], Any]],
) -> list[Row]:
    """Rows of a SELECT answer, its columns named as `fields`; nulls left out."""
    rows: list[Row] = []
    for series in results[0].get("series", ()) if results else ():
        index = {name: i for i, name in enumerate(series["columns"])}
        columns = [
            (name, index[name], convert)
            for name, convert in zip(fields, converters, strict=True)
            if name in index
        ]
        at = index["time"]
        for record in series.get("values", ()):
            values: dict[str, Value] = {
                name: convert(record[i]) for name, i, convert in columns if record[i] is not None
            }
            if values:
                rows.append(Row(time=_EPOCH + record[at] // 1_000 * _MICROSECOND, values=values))
    return rows
