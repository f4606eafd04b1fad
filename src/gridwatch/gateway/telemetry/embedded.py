"""The embedded telemetry store: one SQLite file that answers `ReadingsQuery` like InfluxDB.

What the demo and a first install use instead of InfluxDB. The layout, and why:

- One table per (measurement, time partition), keyed `(series, time)` WITHOUT ROWID, so one
  sensor's points are contiguous and a query is a range scan. Partitions last as long as
  InfluxDB 1.x's shard groups would for the retention (1 h, 1 day or 7 days), so expiry drops
  whole tables and deletes row by row only in the partition the cutoff falls in.
- One column per field (`f0`, `f1` … named in `fields`), values stored with their own type:
  SQLite keeps integers, reals and text apart, so `sum` of an int field stays an int and
  `max` keeps the field's type; booleans are stored as one-byte blobs so they come back as
  bool. Aggregates run in SQL.
- A point with the same series and time merges into the stored one, the new fields winning
  (InfluxDB's rule), so a redelivered message is stored once. What line protocol cannot carry
  (NaN, ±inf, integers beyond int64) is left out as on the InfluxDB path, so both backends
  hold the same points.
- WAL with `synchronous=FULL` by default: a write that returned survives a kill of the process
  and a power cut. One writer connection behind a lock; readers use their own connections and
  see a consistent snapshot while writes go on.
"""

import json
import math
import operator
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from gridwatch.domain import Value
from gridwatch.gateway.telemetry.errors import PointsRejected, StoreUnavailable
from gridwatch.gateway.telemetry.query import Aggregate, ReadingsQuery, Row, numeric_fields
from gridwatch.gateway.telemetry.schema import Point, Series

DEFAULT_RETENTION: Final = timedelta(days=7)
FORMAT_VERSION: Final = 1

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_TRUE: Final = b"\x01"
_FALSE: Final = b"\x00"
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_ROW_KEY: Final = operator.itemgetter(0, 1)  # (series, time)

# A WAL checkpoint copies every page changed since the last one; a batch spread over a thousand
# sensors touches a thousand pages, so checkpointing every 40 MB rather than SQLite's 4 MB lets
# pages changed by many batches be copied once (measured: 80k → 170k points/s).
_WAL_CHECKPOINT_PAGES: Final = 10_000
_WAL_KEEP_BYTES: Final = 64 * 2**20
_WRITER_CACHE_KIB: Final = 64 * 1024
_READER_CACHE_KIB: Final = 16 * 1024
_BUSY_TIMEOUT_MS: Final = 5_000
_IDLE_READERS: Final = 4
# Prune trims the boundary partition this many series per transaction, so a writer waits for
# at most one such chunk.
_TRIM_SERIES_PER_TXN: Final = 100
_AGGREGATES: Final = {
    Aggregate.MEAN: "avg",
    Aggregate.MAX: "max",
    Aggregate.MIN: "min",
    Aggregate.SUM: "sum",
    Aggregate.COUNT: "count",
}

# SQL text is built only from names this module makes (tables `m<id>_<start>`, columns
# `f<n>`) and integer series ids read from its own tables (hence the S608 waivers); every
# value from outside is a bound parameter.
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS measurements (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement_id INTEGER NOT NULL REFERENCES measurements (id),
    sensor_id TEXT NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE (measurement_id, sensor_id, tags)
);
CREATE TABLE IF NOT EXISTS fields (
    measurement_id INTEGER NOT NULL REFERENCES measurements (id),
    name TEXT NOT NULL,
    col INTEGER NOT NULL,
    PRIMARY KEY (measurement_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partitions (
    measurement_id INTEGER NOT NULL REFERENCES measurements (id),
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    name TEXT NOT NULL UNIQUE,
    PRIMARY KEY (measurement_id, start_ns)
) WITHOUT ROWID;
"""


def partition_length(retention: timedelta) -> timedelta:
    """How much time one partition holds: InfluxDB 1.x's shard-group duration for a retention."""
    if retention < timedelta(days=2):
        return timedelta(hours=1)
    if retention <= timedelta(days=183):
        return timedelta(days=1)
    return timedelta(days=7)


@dataclass(frozen=True, slots=True)
class EmbeddedStats:
    """Cheap figures for metrics: bytes on disk and how much the store holds."""

    size_bytes: int  # the database file and its write-ahead log
    partitions: int
    series: int


@dataclass(slots=True)
class _Measurement:
    """The writer's view of one measurement: its columns and partitions."""

    id: int
    columns: dict[str, int] = field(default_factory=dict)  # field name → position
    partitions: dict[int, str] = field(default_factory=dict)  # start ns → table name


class _BadPoint(Exception):  # noqa: N818 - internal signal, translated to PointsRejected
    """A point no backend could store: a field value of a type that is not a `Value`."""


class EmbeddedStore:
    """Telemetry in one SQLite file under the data directory, pruned to a retention."""

    def __init__(
        self, path: Path, *, retention: timedelta = DEFAULT_RETENTION, fsync: bool = True
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError(f"retention must be positive, not {retention}")
        self.path = path
        self.retention = retention
        self._fsync = fsync
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._idle_readers: list[sqlite3.Connection] = []
        self._partition_ns = 0
        self._schema_version = -1
        self._measurements: dict[str, _Measurement] = {}
        self._series: dict[Series, tuple[int, _Measurement]] = {}
        self._upserts: dict[tuple[str, int], str] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open (creating if need be) the database file and load its catalog."""
        with self._write_lock:
            if self._writer is not None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._connect(cache_kib=_WRITER_CACHE_KIB)
            try:
                self._configure_writer(con)
                self._create_schema(con)
                self._writer = con
                self._load_catalog(con)
            except BaseException:
                self._writer = None
                con.close()
                raise

    def close(self) -> None:
        """Close every connection; writes and queries after this raise."""
        with self._write_lock:
            with self._pool_lock:
                readers, self._idle_readers = self._idle_readers, []
            for reader in readers:
                reader.close()
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def __enter__(self) -> Self:
        """Open the store."""
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()

    # -- writing -----------------------------------------------------------------------------

    def write(self, points: Sequence[Point]) -> None:
        """Store the points in one transaction; a point with a stored series and time merges."""
        if not points:
            return
        with self._write_lock:
            con = self._require_writer()
            with self._transaction(con):
                self._follow_schema(con)
                groups = self._encode(con, points)
                for (measurement, start), rows in groups.items():
                    self._upsert(con, self._measurements[measurement], start, rows)
            self._note_own_schema(con)

    def _encode(
        self, con: sqlite3.Connection, points: Sequence[Point]
    ) -> dict[tuple[str, int], list[list[object]]]:
        """Rows to upsert, grouped by (measurement, partition start); creates what is missing."""
        groups: dict[tuple[str, int], list[list[object]]] = {}
        series_ids = self._series
        span = self._partition_ns
        for series, fields, t in points:
            known = series_ids.get(series)
            if known is None:
                known = self._add_series(con, series)
            sid, measurement = known
            columns = measurement.columns
            row: list[object] = [None] * (len(columns) + 2)
            row[0] = sid
            row[1] = t
            empty = True
            for name, value in fields.items():
                # What line protocol cannot carry is left out here too, so both backends
                # store the same points; a bool is kept apart from 1 as a one-byte blob.
                stored: object = value
                if type(value) is float:
                    if value - value != 0.0:  # NaN or ±inf: one operation for both
                        continue
                elif type(value) is bool:
                    stored = _TRUE if value else _FALSE
                elif type(value) is int:
                    if not _INT64_MIN <= value <= _INT64_MAX:
                        continue
                elif type(value) is not str:
                    stored = _plain(series, name, value)
                    if stored is None:
                        continue
                position = columns.get(name)
                if position is None:
                    position = self._add_field(con, measurement, name)
                    row.append(None)
                row[position + 2] = stored
                empty = False
            if empty:
                continue  # InfluxDB stores no point without a field
            key = (series.measurement, t - t % span)
            group = groups.get(key)
            if group is None:
                group = groups[key] = []
            group.append(row)
        return groups

    def _upsert(
        self,
        con: sqlite3.Connection,
        measurement: _Measurement,
        start: int,
        rows: list[list[object]],
    ) -> None:
        table = measurement.partitions.get(start)
        if table is None:
            table = self._add_partition(con, measurement, start)
        width = len(measurement.columns)
        sql = self._upserts.get((table, width))
        if sql is None:
            cols = [f"f{i}" for i in range(width)]
            updates = ", ".join(f"{c} = coalesce(excluded.{c}, {c})" for c in cols)
            sql = (
                f'INSERT INTO "{table}" (s, t{"".join(", " + c for c in cols)}) '  # noqa: S608
                f"VALUES (?, ?{', ?' * width}) ON CONFLICT (s, t) DO UPDATE SET {updates}"
            )
            self._upserts[(table, width)] = sql
        full = width + 2
        if any(len(row) != full for row in rows):  # a field first seen part-way through
            rows = [row + [None] * (full - len(row)) for row in rows]
        # Key order keeps consecutive inserts on the same B-tree pages; the sort is stable, so
        # of two points with one key in a batch the later still wins.
        rows.sort(key=_ROW_KEY)
        con.executemany(sql, rows)

    # -- catalog (writer side) ---------------------------------------------------------------

    def _add_series(self, con: sqlite3.Connection, series: Series) -> tuple[int, _Measurement]:
        measurement = self._measurements.get(series.measurement)
        if measurement is None:
            measurement = self._add_measurement(con, str(series.measurement))
        tags = json.dumps(series.tags, separators=(",", ":"))
        # Another process may have added it: insert if missing, then read the id either way.
        con.execute(
            "INSERT OR IGNORE INTO series (measurement_id, sensor_id, tags) VALUES (?, ?, ?)",
            (measurement.id, series.sensor_id, tags),
        )
        (sid,) = con.execute(
            "SELECT id FROM series WHERE measurement_id = ? AND sensor_id = ? AND tags = ?",
            (measurement.id, series.sensor_id, tags),
        ).fetchone()
        known = self._series[series] = (sid, measurement)
        return known

    def _add_measurement(self, con: sqlite3.Connection, name: str) -> _Measurement:
        cursor = con.execute("INSERT INTO measurements (name) VALUES (?)", (name,))
        assert cursor.lastrowid is not None
        measurement = self._measurements[name] = _Measurement(cursor.lastrowid)
        return measurement

    def _add_field(self, con: sqlite3.Connection, measurement: _Measurement, name: str) -> int:
        position = len(measurement.columns)
        con.execute(
            "INSERT INTO fields (measurement_id, name, col) VALUES (?, ?, ?)",
            (measurement.id, name, position),
        )
        # Every partition of a measurement has the same columns, so a query can read any of them.
        for table in measurement.partitions.values():
            con.execute(f'ALTER TABLE "{table}" ADD COLUMN f{position}')
        measurement.columns[name] = position
        return position

    def _add_partition(self, con: sqlite3.Connection, measurement: _Measurement, start: int) -> str:
        table = f"m{measurement.id}_{start // 10**9}"
        cols = "".join(f", f{i}" for i in range(len(measurement.columns)))
        # Columns without a type keep each value's own storage class (int, real, text, blob).
        con.execute(
            f'CREATE TABLE "{table}" (s INTEGER NOT NULL, t INTEGER NOT NULL{cols}, '
            "PRIMARY KEY (s, t)) WITHOUT ROWID"
        )
        con.execute(
            "INSERT INTO partitions (measurement_id, start_ns, end_ns, name) VALUES (?, ?, ?, ?)",
            (measurement.id, start, start + self._partition_ns, table),
        )
        measurement.partitions[start] = table
        return table

    def _configure_writer(self, con: sqlite3.Connection) -> None:
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreUnavailable(f"{self.path}: cannot use a write-ahead log ({mode})")
        con.execute(f"PRAGMA synchronous = {'FULL' if self._fsync else 'NORMAL'}")
        con.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
        con.execute(f"PRAGMA journal_size_limit = {_WAL_KEEP_BYTES}")

    def _create_schema(self, con: sqlite3.Connection) -> None:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, FORMAT_VERSION):
            raise StoreUnavailable(f"{self.path}: unknown telemetry format {version}")
        con.execute("BEGIN IMMEDIATE")
        try:
            # Not executescript: it commits first, and the schema belongs in this transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            # The partition length is chosen once, when the file is made: partitions of
            # different lengths could overlap.
            span = partition_length(self.retention) // _MICROSECOND * 1_000
            con.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('partition_ns', ?)", (span,)
            )
            con.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _load_catalog(self, con: sqlite3.Connection) -> None:
        """Read measurements, fields and partitions (series ids are looked up as needed)."""
        (self._partition_ns,) = con.execute(
            "SELECT value FROM meta WHERE key = 'partition_ns'"
        ).fetchone()
        by_id: dict[int, _Measurement] = {}
        measurements: dict[str, _Measurement] = {}
        for mid, name in con.execute("SELECT id, name FROM measurements"):
            measurements[name] = by_id[mid] = _Measurement(mid)
        for mid, name, col in con.execute(
            "SELECT measurement_id, name, col FROM fields ORDER BY col"
        ):
            by_id[mid].columns[name] = col
        for mid, start, table in con.execute(
            "SELECT measurement_id, start_ns, name FROM partitions"
        ):
            by_id[mid].partitions[start] = table
        self._measurements = measurements
        self._series = {}
        self._upserts = {}
        self._schema_version = con.execute("PRAGMA schema_version").fetchone()[0]

    def _follow_schema(self, con: sqlite3.Connection) -> None:
        """Reload the catalog if another process changed the schema since we last looked."""
        if con.execute("PRAGMA schema_version").fetchone()[0] != self._schema_version:
            self._load_catalog(con)

    def _note_own_schema(self, con: sqlite3.Connection) -> None:
        self._schema_version = con.execute("PRAGMA schema_version").fetchone()[0]

    @contextmanager
    def _transaction(self, con: sqlite3.Connection) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT, translating failures once for every writing transaction.

        A value SQLite cannot bind (or a point we refuse) rejects the batch: PointsRejected, so
        the writer isolates it. Any other database error is StoreUnavailable: try again later.
        """
        try:
            con.execute("BEGIN IMMEDIATE")
            yield
            con.execute("COMMIT")
        except (_BadPoint, OverflowError, sqlite3.InterfaceError) as err:
            self._abort(con)
            raise PointsRejected(400, f"embedded store refused the batch: {err}") from None
        except sqlite3.Error as err:
            self._abort(con)
            raise StoreUnavailable(f"embedded store: {err}") from err
        except BaseException:
            self._abort(con)
            raise

    def _abort(self, con: sqlite3.Connection) -> None:
        """Roll back; the next transaction reloads the catalog this one may have changed."""
        # The catalog is reloaded then, not here: a failing disk would fail the reload too and
        # hide the error being handled.
        self._schema_version = -1
        if con.in_transaction:
            with suppress(sqlite3.Error):
                con.execute("ROLLBACK")

    def _require_writer(self) -> sqlite3.Connection:
        if self._writer is None:
            raise StoreUnavailable("embedded store is not open")
        return self._writer

    def _connect(self, *, cache_kib: int) -> sqlite3.Connection:
        # Autocommit mode: transactions are begun explicitly. Not bound to a thread because
        # asyncio.to_thread may run consecutive calls on different pool threads; the lock and
        # the pool keep each connection to one thread at a time.
        con = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=512
        )
        con.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        con.execute(f"PRAGMA cache_size = -{cache_kib}")
        return con

    # -- reading -----------------------------------------------------------------------------

    def readings(self, query: ReadingsQuery) -> list[Row]:
        """Points or windows of one sensor, with InfluxQL's semantics (see `ReadingsQuery`)."""
        start, end = _ns(query.start), _ns(query.end)
        if query.every is not None and (query.agg is None or query.every <= timedelta(0)):
            raise ValueError(f"every={query.every} needs an aggregate and must be positive")
        if query.limit <= 0 or start >= end:
            return []
        with self._reader() as con:
            con.execute("BEGIN")  # one snapshot for the catalog and the points
            scope = _Scope.find(con, query, start, end)
            if scope is None:
                return []
            if query.agg is None:
                return scope.raw(con, start, end, query.limit)
            return scope.aggregated(con, query, start, end)

    def stats(self) -> EmbeddedStats:
        """Bytes on disk, partitions and series: cheap enough to call on every scrape."""
        size = 0
        for file in (self.path, self.path.with_name(self.path.name + "-wal")):
            with suppress(FileNotFoundError):
                size += file.stat().st_size
        with self._reader() as con:
            (partitions,) = con.execute("SELECT count(*) FROM partitions").fetchone()
            (series,) = con.execute("SELECT count(*) FROM series").fetchone()
        return EmbeddedStats(size_bytes=size, partitions=partitions, series=series)

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A read connection for this thread's use, returned to the pool afterwards."""
        if self._writer is None:
            raise StoreUnavailable("embedded store is not open")
        with self._pool_lock:
            con = self._idle_readers.pop() if self._idle_readers else None
        if con is None:
            con = self._connect(cache_kib=_READER_CACHE_KIB)
            con.execute("PRAGMA query_only = ON")
        try:
            yield con
        except sqlite3.Error as err:
            raise StoreUnavailable(f"embedded store: {err}") from err
        finally:
            if con.in_transaction:
                with suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
            with self._pool_lock:
                keep = self._writer is not None and len(self._idle_readers) < _IDLE_READERS
                if keep:
                    self._idle_readers.append(con)
            if not keep:
                con.close()

    # -- retention ---------------------------------------------------------------------------

    def prune(self, now: datetime, *, budget: timedelta = timedelta(seconds=0.5)) -> int:
        """Remove points older than `now - retention`; how many went.

        Expired partitions are dropped whole; the one the cutoff falls in is trimmed a chunk of
        series per transaction. Work stops after about `budget` (one transaction may overrun
        it), and the next call carries on, so writers never wait behind a long prune.
        """
        cutoff = _ns(now - self.retention)
        deadline = time.monotonic() + budget.total_seconds()
        removed = 0
        while time.monotonic() < deadline:
            dropped = self._drop_oldest(cutoff)
            if dropped is None:
                break
            removed += dropped
            time.sleep(0)  # let a waiting writer take the lock between transactions
        for measurement_id, table in self._boundary_partitions(cutoff):
            after = 0
            while time.monotonic() < deadline:
                step = self._trim(measurement_id, table, cutoff, after)
                if step is None:
                    break
                after, count = step
                removed += count
                time.sleep(0)
        return removed

    def _drop_oldest(self, cutoff: int) -> int | None:
        """Drop the oldest partition that ends at or before the cutoff; its points, or None."""
        with self._write_lock:
            con = self._require_writer()
            with self._transaction(con):
                self._follow_schema(con)
                found = con.execute(
                    "SELECT measurement_id, start_ns, name FROM partitions WHERE end_ns <= ? "
                    "ORDER BY start_ns LIMIT 1",
                    (cutoff,),
                ).fetchone()
                if found is None:
                    return None
                measurement_id, start, table = found
                (count,) = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()  # noqa: S608
                con.execute(f'DROP TABLE "{table}"')
                con.execute(
                    "DELETE FROM partitions WHERE measurement_id = ? AND start_ns = ?",
                    (measurement_id, start),
                )
            for measurement in self._measurements.values():
                if measurement.id == measurement_id:
                    measurement.partitions.pop(start, None)
            self._upserts = {key: sql for key, sql in self._upserts.items() if key[0] != table}
            self._note_own_schema(con)
            return int(count)

    def _boundary_partitions(self, cutoff: int) -> list[tuple[int, str]]:
        with self._write_lock:
            con = self._require_writer()
            return con.execute(
                "SELECT measurement_id, name FROM partitions WHERE start_ns < ? AND end_ns > ?",
                (cutoff, cutoff),
            ).fetchall()

    def _trim(
        self, measurement_id: int, table: str, cutoff: int, after: int
    ) -> tuple[int, int] | None:
        """Delete points before the cutoff for the next chunk of series after `after`."""
        with self._write_lock:
            con = self._require_writer()
            with self._transaction(con):
                ids = [
                    sid
                    for (sid,) in con.execute(
                        "SELECT id FROM series WHERE measurement_id = ? AND id > ? "
                        "ORDER BY id LIMIT ?",
                        (measurement_id, after, _TRIM_SERIES_PER_TXN),
                    )
                ]
                exists = con.execute("SELECT 1 FROM partitions WHERE name = ?", (table,)).fetchone()
                if not ids or exists is None:
                    return None
                # Literal ids, so SQLite seeks each series' range (they are our own integers).
                cursor = con.execute(
                    f'DELETE FROM "{table}" WHERE s IN ({",".join(map(str, ids))}) AND t < ?',  # noqa: S608
                    (cutoff,),
                )
            return ids[-1], cursor.rowcount


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a query touches, read inside its snapshot: series, columns and partitions."""

    measurement: str
    series: str  # an SQL condition on `s`
    columns: list[tuple[str, int]]  # (field name, column position)
    tables: list[str]  # newest first

    @classmethod
    def find(
        cls, con: sqlite3.Connection, query: ReadingsQuery, start: int, end: int
    ) -> "_Scope | None":
        """The scope of a query, or None when it can hold no points."""
        found = con.execute(
            "SELECT id FROM measurements WHERE name = ?", (query.measurement,)
        ).fetchone()
        if found is None:
            return None
        (measurement_id,) = found
        ids = [
            sid
            for (sid,) in con.execute(
                "SELECT id FROM series WHERE measurement_id = ? AND sensor_id = ?",
                (measurement_id, query.sensor_id),
            )
        ]
        tables = [
            name
            for (name,) in con.execute(
                "SELECT name FROM partitions WHERE measurement_id = ? "
                "AND start_ns < ? AND end_ns > ? ORDER BY start_ns DESC",
                (measurement_id, end, start),
            )
        ]
        if not ids or not tables:
            return None
        columns = con.execute(
            "SELECT name, col FROM fields WHERE measurement_id = ? ORDER BY col", (measurement_id,)
        ).fetchall()
        series = f"s = {ids[0]}" if len(ids) == 1 else f"s IN ({','.join(map(str, ids))})"
        return cls(query.measurement, series, columns, tables)

    def raw(self, con: sqlite3.Connection, start: int, end: int, limit: int) -> list[Row]:
        """The newest `limit` points in the range, oldest first, with every field."""
        names = [name for name, _ in self.columns]
        select = "".join(f", f{col}" for _, col in self.columns)
        # Partitions do not overlap, so reading them newest first gives the newest points.
        found: list[tuple[Any, ...]] = []
        for table in self.tables:
            found += con.execute(
                f'SELECT t{select} FROM "{table}" WHERE {self.series} AND t >= ? AND t < ? '  # noqa: S608
                "ORDER BY t DESC, s DESC LIMIT ?",
                (start, end, limit - len(found)),
            ).fetchall()
            if len(found) >= limit:
                break
        found.reverse()
        return [
            Row(
                time=_time(row[0]),
                values={names[i]: _decode(v) for i, v in enumerate(row[1:]) if v is not None},
            )
            for row in found
        ]

    def aggregated(
        self, con: sqlite3.Connection, query: ReadingsQuery, start: int, end: int
    ) -> list[Row]:
        """The newest `limit` non-empty windows, oldest first, aggregated per numeric field."""
        assert query.agg is not None
        numeric = set(numeric_fields(self.measurement))
        columns = [(name, col) for name, col in self.columns if name in numeric]
        if not columns:
            return []
        # Only integers and reals are aggregated: a stray text or bool value in a numeric
        # field is skipped rather than read as 0.
        values = ", ".join(
            f"CASE WHEN typeof(f{col}) IN ('integer', 'real') THEN f{col} END AS x{i}"
            for i, (_, col) in enumerate(columns)
        )
        # Windows aligned to the epoch; floor division, so times before 1970 align too.
        bucket = ":start" if query.every is None else "t - ((t % :every) + :every) % :every"
        inner = " UNION ALL ".join(
            f'SELECT {bucket} AS b, {values} FROM "{table}" '  # noqa: S608
            f"WHERE {self.series} AND t >= :start AND t < :end"
            for table in self.tables
        )
        function = _AGGREGATES[query.agg]
        aggregates = ", ".join(f"{function}(x{i})" for i in range(len(columns)))
        nonempty = " + ".join(f"count(x{i})" for i in range(len(columns)))
        sql = (
            f"SELECT b, {aggregates} FROM ({inner}) GROUP BY b HAVING {nonempty} > 0 "  # noqa: S608
            "ORDER BY b DESC LIMIT :limit"
        )
        every = None if query.every is None else query.every // _MICROSECOND * 1_000
        params = {"start": start, "end": end, "every": every, "limit": query.limit}
        rows = con.execute(sql, params).fetchall()
        rows.reverse()
        empty: object = 0 if query.agg is Aggregate.COUNT else None
        return [
            Row(
                time=_time(row[0]),
                values={
                    columns[i][0]: v for i, v in enumerate(row[1:]) if v is not None and v != empty
                },
            )
            for row in rows
        ]


def _ns(moment: datetime) -> int:
    """Integer nanoseconds since the epoch (integer arithmetic: a float loses microseconds)."""
    return (moment - _EPOCH) // _MICROSECOND * 1_000


def _time(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def _plain(series: Series, name: str, value: object) -> object:
    """A subclass of a value type (an enum, a numpy float) as its base type; None if unwritable."""
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, int):
        whole = int(value)
        return whole if _INT64_MIN <= whole <= _INT64_MAX else None
    if isinstance(value, float):
        real = float(value)
        return real if math.isfinite(real) else None
    if isinstance(value, str):
        return str(value)
    raise _BadPoint(f"{series.sensor_id}: {name} is a {type(value).__name__}, not a field value")


def _decode(value: object) -> Value:
    if isinstance(value, bytes):
        return value == _TRUE
    assert isinstance(value, float | int | str)
    return value
