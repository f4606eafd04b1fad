"""The disk spool: batches the store could not take, kept durably and replayed oldest first.

One file per batch, named `{seq:020d}-{points}-{created_us}.lp.gz`, holding the batch body as
given (gzip-compressed line protocol). The name carries everything the spool needs to know at
open (order, point count, age) so a restart lists the directory and decompresses nothing.

An append is durable when it returns: the body goes to `<name>.tmp`, is fsynced, renamed into
place and the directory is fsynced. A crash mid-append leaves at most a `.tmp` file, which is
never replayed and is deleted at the next open. The caller may therefore acknowledge a message
as soon as `append()` returns.
"""

import contextlib
import fcntl
import logging
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

log = logging.getLogger("gridwatch.telemetry")

DEFAULT_MAX_BYTES = 1 << 30
_SUFFIX = ".lp.gz"
_TMP_SUFFIX = ".tmp"
_NAME = re.compile(r"(\d{20})-(\d+)-(\d+)\.lp\.gz")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BatchTooLargeError(ValueError):
    """A single batch is bigger than the whole spool bound, so no amount of dropping fits it."""

    def __init__(self, size: int, max_bytes: int) -> None:
        self.size = size
        self.max_bytes = max_bytes
        super().__init__(
            f"batch of {size} bytes is larger than the spool bound of {max_bytes} bytes"
        )


class SpoolInUseError(RuntimeError):
    """Another DiskSpool (in this or another process) has the directory open."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        super().__init__(f"spool directory {directory} is in use by another DiskSpool")


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """One batch read back from the spool."""

    seq: int
    body: bytes
    points: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """A consistent snapshot of the spool's counters, for metrics."""

    batches: int
    points: int
    size_bytes: int
    dropped_points: int
    oldest_created_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the spool knows about one batch file without opening it."""

    seq: int
    points: int
    created_us: int
    size: int

    @property
    def name(self) -> str:
        return f"{self.seq:020d}-{self.points}-{self.created_us}{_SUFFIX}"

    @property
    def created_at(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.created_us)


class DiskSpool:
    """A bounded, crash-safe FIFO of batch bodies in one directory; drops the oldest when full."""

    def __init__(self, directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self._dir = directory
        self._max_bytes = max_bytes
        # Serialises the operations that touch files; held across fsyncs.
        self._io_lock = threading.Lock()
        # Guards the index and counters only, never held across I/O, so readers never wait
        # for a disk.
        self._state_lock = threading.Lock()
        self._entries: deque[_Entry] = deque()
        self._size = 0
        self._points = 0
        self._dropped = 0
        self._dir_fd = self._open_directory()
        try:
            newest_seq = self._load()
        except BaseException:
            os.close(self._dir_fd)
            raise
        self._next_seq = newest_seq + 1

    @property
    def directory(self) -> Path:
        """The directory the batches live in."""
        return self._dir

    @property
    def max_bytes(self) -> int:
        """The bound on the bodies' total size."""
        return self._max_bytes

    @property
    def size_bytes(self) -> int:
        """Total size of the spooled bodies (the filesystem adds up to a block per file)."""
        with self._state_lock:
            return self._size

    @property
    def batches(self) -> int:
        """Number of spooled batches."""
        with self._state_lock:
            return len(self._entries)

    @property
    def points(self) -> int:
        """Number of points in the spooled batches."""
        with self._state_lock:
            return self._points

    @property
    def dropped_points(self) -> int:
        """Points dropped to stay within the bound since this spool was opened."""
        with self._state_lock:
            return self._dropped

    def oldest_age_s(self, now: datetime) -> float:
        """Seconds since the oldest batch was spooled; 0.0 when the spool is empty."""
        with self._state_lock:
            oldest = self._entries[0] if self._entries else None
        if oldest is None:
            return 0.0
        return max((now - oldest.created_at).total_seconds(), 0.0)

    def stats(self) -> SpoolStats:
        """All counters read at one instant."""
        with self._state_lock:
            return SpoolStats(
                batches=len(self._entries),
                points=self._points,
                size_bytes=self._size,
                dropped_points=self._dropped,
                oldest_created_at=self._entries[0].created_at if self._entries else None,
            )

    def append(self, body: bytes, *, points: int) -> int:
        """Store a batch durably, dropping the oldest to make room; returns the points dropped."""
        if points < 0:
            raise ValueError(f"points must not be negative, got {points}")
        if len(body) > self._max_bytes:
            raise BatchTooLargeError(len(body), self._max_bytes)
        with self._io_lock:
            self._check_open()
            # Make room first: when the disk is what is full, the new file needs that space.
            dropped = self._drop_oldest_until_fits(len(body))
            entry = _Entry(self._next_seq, points, time.time_ns() // 1_000, len(body))
            self._next_seq += 1
            self._write_durably(entry, body)
            with self._state_lock:
                self._entries.append(entry)
                self._size += entry.size
                self._points += entry.points
        return dropped

    def peek(self) -> SpooledBatch | None:
        """The oldest batch, or None when the spool is empty; it stays until remove()."""
        with self._io_lock:
            self._check_open()
            for _ in range(self.batches):
                with self._state_lock:
                    entry = self._entries[0]
                try:
                    body = (self._dir / entry.name).read_bytes()
                except FileNotFoundError:
                    # Deleted behind our back: the points are gone, so they count as dropped.
                    log.warning("spool file %s vanished; %d points lost", entry.name, entry.points)
                    self._forget(entry, dropped=True)
                    continue
                return SpooledBatch(entry.seq, body, entry.points, entry.created_at)
            return None

    def remove(self, batch: SpooledBatch) -> None:
        """Forget a batch the store has taken; a no-op if it was dropped meanwhile."""
        with self._io_lock:
            self._check_open()
            with self._state_lock:
                entry = next((e for e in self._entries if e.seq == batch.seq), None)
            if entry is None:
                return
            # No directory fsync: if a crash resurrects the file, the batch is written again,
            # and InfluxDB stores identical points (same series and timestamp) only once.
            (self._dir / entry.name).unlink(missing_ok=True)
            self._forget(entry, dropped=False)

    def close(self) -> None:
        """Release the directory for another DiskSpool."""
        with self._io_lock:
            if self._dir_fd >= 0:
                os.close(self._dir_fd)  # also releases the flock
                self._dir_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open_directory(self) -> int:
        """Create the directory durably, open it and lock it against a second spool."""
        if not self._dir.is_dir():
            self._dir.mkdir(parents=True, exist_ok=True)
            _fsync_directory(self._dir.parent)
        fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            # Two spools on one directory would hand out the same sequence numbers and
            # overwrite each other's batches. The lock dies with the process, even on SIGKILL.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolInUseError(self._dir) from None
        return fd

    def _load(self) -> int:
        """Index batch files, delete torn temp files, trim to the bound; returns the newest seq."""
        entries: list[_Entry] = []
        torn = 0
        for path in self._dir.iterdir():
            if path.name.endswith(_SUFFIX + _TMP_SUFFIX):
                path.unlink(missing_ok=True)
                torn += 1
                continue
            match = _NAME.fullmatch(path.name)
            if match is None:
                log.warning("spool %s: ignoring unknown file %s", self._dir, path.name)
                continue
            seq, points, created_us = (int(group) for group in match.groups())
            entries.append(_Entry(seq, points, created_us, path.stat().st_size))
        entries.sort(key=lambda entry: entry.seq)
        # Taken before trimming, so sequence numbers continue even if every file is dropped.
        newest_seq = entries[-1].seq if entries else 0
        self._entries.extend(entries)
        self._size = sum(entry.size for entry in entries)
        self._points = sum(entry.points for entry in entries)
        if torn:
            log.warning("spool %s: deleted %d torn temp file(s) from a crash", self._dir, torn)
        # The bound may have been lowered since the files were written.
        if self._drop_oldest_until_fits(0) or torn:
            os.fsync(self._dir_fd)
        if entries:
            log.info(
                "spool %s: %d batches, %d points, %d bytes to replay",
                self._dir, len(self._entries), self._points, self._size,
            )  # fmt: skip
        return newest_seq

    def _drop_oldest_until_fits(self, incoming: int) -> int:
        """Delete the oldest batches until `incoming` more bytes fit; returns the points lost."""
        dropped_points = 0
        dropped_batches = 0
        for _ in range(self.batches):
            with self._state_lock:
                if self._size + incoming <= self._max_bytes:
                    break
                oldest = self._entries[0]
            (self._dir / oldest.name).unlink(missing_ok=True)
            self._forget(oldest, dropped=True)
            dropped_points += oldest.points
            dropped_batches += 1
        if dropped_batches:
            log.warning(
                "spool %s full (bound %d bytes): dropped the %d oldest batches, %d points",
                self._dir, self._max_bytes, dropped_batches, dropped_points,
            )  # fmt: skip
        return dropped_points

    def _forget(self, entry: _Entry, *, dropped: bool) -> None:
        with self._state_lock:
            self._entries.remove(entry)
            self._size -= entry.size
            self._points -= entry.points
            if dropped:
                self._dropped += entry.points

    def _write_durably(self, entry: _Entry, body: bytes) -> None:
        """Write temp file, fsync it, rename it into place, fsync the directory."""
        final = self._dir / entry.name
        tmp = final.with_name(final.name + _TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(body)
                file.flush()
                os.fsync(file.fileno())
            tmp.replace(final)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        # Also makes the unlinks of any batches dropped for room durable.
        os.fsync(self._dir_fd)

    def _check_open(self) -> None:
        if self._dir_fd < 0:
            raise RuntimeError(f"spool {self._dir} is closed")


def _fsync_directory(path: Path) -> None:
    """Make a directory's entries (a new file or subdirectory in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
