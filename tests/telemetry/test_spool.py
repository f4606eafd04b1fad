"""DiskSpool on a real filesystem: order, bounds, crash safety and counters."""

import gzip
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gridwatch.gateway.telemetry.spool import (
    BatchTooLargeError,
    DiskSpool,
    SpooledBatch,
    SpoolInUseError,
    SpoolStats,
)

SIZE = 100  # bytes per batch in the bound tests
NEWLINE = b"\n"


def _body(n: int) -> bytes:
    return gzip.compress(f"m,sensor_id=s{n} v={n} {n}".encode())


def _sized(n: int) -> bytes:
    """A SIZE-byte body that says which batch it is."""
    return f"{n:<{SIZE}}".encode()


def _seqs_on_disk(directory: Path) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in directory.iterdir())


def _drain(spool: DiskSpool) -> list[SpooledBatch]:
    drained = []
    for _ in range(spool.batches):
        batch = spool.peek()
        assert batch is not None
        drained.append(batch)
        spool.remove(batch)
    assert spool.peek() is None
    return drained


def test_batches_come_back_oldest_first_with_their_points(tmp_path):
    with DiskSpool(tmp_path / "spool") as spool:
        for n in range(5):
            assert spool.append(_body(n), points=n + 1) == 0

        assert (spool.batches, spool.points) == (5, 15)
        drained = _drain(spool)

        assert [b.body for b in drained] == [_body(n) for n in range(5)]
        assert [b.points for b in drained] == [1, 2, 3, 4, 5]
        assert (spool.batches, spool.points, spool.size_bytes) == (0, 0, 0)


def test_peek_leaves_the_batch_until_removed(tmp_path):
    with DiskSpool(tmp_path) as spool:
        spool.append(_body(1), points=1)

        first, again = spool.peek(), spool.peek()

        assert first == again
        assert spool.batches == 1


def test_order_and_counts_survive_a_reopen(tmp_path):
    with DiskSpool(tmp_path) as spool:
        for n in range(3):
            spool.append(_body(n), points=10)
        oldest = spool.peek()
        assert oldest is not None
        spool.remove(oldest)

    with DiskSpool(tmp_path) as reopened:
        assert (reopened.batches, reopened.points) == (2, 20)
        assert reopened.size_bytes == len(_body(1)) + len(_body(2))
        reopened.append(_body(3), points=10)
        drained = _drain(reopened)

    assert [b.body for b in drained] == [_body(1), _body(2), _body(3)]
    # Sequence numbers continue after the restart, so the new batch sorts last.
    assert drained[0].seq < drained[1].seq < drained[2].seq


def test_sequence_continues_even_when_the_bound_drops_everything_at_open(tmp_path):
    with DiskSpool(tmp_path, max_bytes=10 * SIZE) as spool:
        for n in range(3):
            spool.append(_sized(n), points=1)
    last_seq = _seqs_on_disk(tmp_path)[-1]

    with DiskSpool(tmp_path, max_bytes=SIZE - 1) as shrunk:
        assert shrunk.dropped_points == 3
        shrunk.append(b"x", points=1)
        batch = shrunk.peek()
        assert batch is not None
        assert batch.seq == last_seq + 1


def test_created_at_is_utc_and_ages(tmp_path):
    with DiskSpool(tmp_path) as spool:
        assert spool.oldest_age_s(datetime.now(UTC)) == 0.0
        before = datetime.now(UTC)
        spool.append(_body(1), points=1)
        after = datetime.now(UTC)
        spool.append(_body(2), points=1)

        batch = spool.peek()
        assert batch is not None
        assert batch.created_at.tzinfo == UTC
        assert before - timedelta(milliseconds=1) <= batch.created_at <= after
        assert spool.oldest_age_s(batch.created_at + timedelta(seconds=90)) == 90.0
        assert spool.stats().oldest_created_at == batch.created_at


def test_a_full_spool_drops_the_oldest_and_counts_their_points(tmp_path, caplog):
    with DiskSpool(tmp_path, max_bytes=3 * SIZE) as spool:
        for n in range(3):
            assert spool.append(_sized(n), points=n + 1) == 0

        with caplog.at_level(logging.WARNING, logger="gridwatch.telemetry"):
            dropped = spool.append(_sized(3), points=4)

        assert dropped == 1  # batch 0, one point
        assert spool.dropped_points == 1
        assert (spool.batches, spool.points, spool.size_bytes) == (3, 2 + 3 + 4, 3 * SIZE)
        assert "dropped the 1 oldest batches, 1 points" in caplog.text
        assert [b.body for b in _drain(spool)] == [_sized(1), _sized(2), _sized(3)]


def test_a_big_batch_drops_as_many_old_ones_as_it_needs(tmp_path):
    with DiskSpool(tmp_path, max_bytes=4 * SIZE) as spool:
        for n in range(4):
            spool.append(_sized(n), points=10)

        dropped = spool.append(b"x" * (3 * SIZE), points=7)

        assert dropped == 30
        assert spool.dropped_points == 30
        assert [b.points for b in _drain(spool)] == [10, 7]


def test_a_batch_filling_the_bound_exactly_fits(tmp_path):
    with DiskSpool(tmp_path, max_bytes=SIZE) as spool:
        assert spool.append(_sized(0), points=1) == 0
        assert spool.append(_sized(1), points=1) == 1
        assert spool.size_bytes == SIZE


def test_a_batch_bigger_than_the_bound_is_refused(tmp_path):
    with DiskSpool(tmp_path, max_bytes=SIZE) as spool:
        spool.append(_sized(0), points=1)

        with pytest.raises(BatchTooLargeError, match=f"{SIZE + 1} bytes is larger") as caught:
            spool.append(b"x" * (SIZE + 1), points=1)

        assert (caught.value.size, caught.value.max_bytes) == (SIZE + 1, SIZE)
        # Refusing it dropped nothing.
        assert (spool.batches, spool.dropped_points) == (1, 0)


def test_a_lowered_bound_trims_at_open(tmp_path, caplog):
    with DiskSpool(tmp_path) as spool:
        for n in range(5):
            spool.append(_sized(n), points=2)

    with (
        caplog.at_level(logging.WARNING, logger="gridwatch.telemetry"),
        DiskSpool(tmp_path, max_bytes=2 * SIZE) as smaller,
    ):
        assert smaller.dropped_points == 6
        assert [b.body for b in _drain(smaller)] == [_sized(3), _sized(4)]
    assert "dropped the 3 oldest batches, 6 points" in caplog.text


def test_torn_temp_files_are_ignored_and_deleted(tmp_path, caplog):
    with DiskSpool(tmp_path) as spool:
        spool.append(_body(0), points=1)
    # What a crash between creating the temp file and renaming it leaves behind.
    torn = tmp_path / f"{2:020d}-5-1700000000000000.lp.gz.tmp"
    torn.write_bytes(_body(1)[:7])

    with caplog.at_level(logging.WARNING, logger="gridwatch.telemetry"), DiskSpool(tmp_path) as s:
        assert (s.batches, s.points) == (1, 1)
        assert not torn.exists()
        s.append(_body(2), points=1)
        assert [b.body for b in _drain(s)] == [_body(0), _body(2)]
    assert "deleted 1 torn temp file" in caplog.text


def test_unknown_files_are_left_alone(tmp_path):
    stray = tmp_path / "README"
    stray.write_text("not a batch")

    with DiskSpool(tmp_path) as spool:
        assert spool.batches == 0

    assert stray.read_text() == "not a batch"


def test_removing_a_batch_dropped_meanwhile_is_a_no_op(tmp_path):
    with DiskSpool(tmp_path, max_bytes=SIZE) as spool:
        spool.append(_sized(0), points=3)
        in_flight = spool.peek()
        assert in_flight is not None
        spool.append(_sized(1), points=4)  # drops the batch being written

        spool.remove(in_flight)

        assert (spool.batches, spool.points, spool.dropped_points) == (1, 4, 3)


def test_a_vanished_file_is_skipped_and_counted_as_dropped(tmp_path):
    with DiskSpool(tmp_path) as spool:
        spool.append(_body(0), points=3)
        spool.append(_body(1), points=4)
        first = sorted(tmp_path.iterdir())[0]
        first.unlink()

        batch = spool.peek()

        assert batch is not None
        assert batch.body == _body(1)
        assert (spool.batches, spool.dropped_points) == (1, 3)


def test_one_spool_per_directory(tmp_path):
    with DiskSpool(tmp_path), pytest.raises(SpoolInUseError):
        DiskSpool(tmp_path)
    with DiskSpool(tmp_path) as after_close:
        assert after_close.batches == 0


def test_a_closed_spool_refuses_work(tmp_path):
    spool = DiskSpool(tmp_path)
    spool.close()

    with pytest.raises(RuntimeError, match="closed"):
        spool.append(b"x", points=1)


@pytest.mark.parametrize("kwargs", [{"max_bytes": 0}, {"max_bytes": -1}])
def test_the_bound_must_be_positive(tmp_path, kwargs):
    with pytest.raises(ValueError, match="max_bytes"):
        DiskSpool(tmp_path, **kwargs)


def test_points_must_not_be_negative(tmp_path):
    with DiskSpool(tmp_path) as spool, pytest.raises(ValueError, match="points"):
        spool.append(b"x", points=-1)


def test_append_fsyncs_the_file_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    synced: list[tuple[str, list[str]]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        opened = Path(f"/proc/self/fd/{fd}").readlink()
        synced.append((str(opened), sorted(p.name for p in tmp_path.iterdir())))
        real_fsync(fd)

    with DiskSpool(tmp_path) as spool:
        monkeypatch.setattr(os, "fsync", recording_fsync)
        spool.append(_body(0), points=1)

    [final] = [p.name for p in tmp_path.iterdir()]
    assert synced == [
        (str(tmp_path / f"{final}.tmp"), [f"{final}.tmp"]),  # the data, before it has its name
        (str(tmp_path), [final]),  # then the rename
    ]


_APPENDER = textwrap.dedent(
    """
    import gzip, sys
    from pathlib import Path
    from gridwatch.gateway.telemetry.spool import DiskSpool

    spool = DiskSpool(Path(sys.argv[1]))
    for n in range(1_000_000):
        spool.append(gzip.compress(b"m v=%d %d" % (n, n)), points=n % 7 + 1)
        sys.stdout.write(f"{n}\\n")  # acknowledged: append() returned
        sys.stdout.flush()
    """
)


def _read_acks(proc: subprocess.Popen[bytes], wanted: int, timeout_s: float) -> bytes:
    """Read the appender's output until `wanted` acknowledgements came, bounded in time."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout_s
    for _ in range(100_000):
        if out.count(b"\n") >= wanted:
            return out
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"appender acknowledged {out.count(NEWLINE)} of {wanted} in time"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"appender exited early: {proc.wait()}"
            out += chunk
    raise AssertionError("appender output loop did not finish")


@pytest.mark.parametrize("kill_after", [1, 20, 150])
def test_every_acknowledged_append_survives_sigkill_in_order(tmp_path, kill_after):
    proc = subprocess.Popen(
        [sys.executable, "-c", _APPENDER, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out = _read_acks(proc, kill_after, timeout_s=30)
        proc.send_signal(signal.SIGKILL)  # mid-append, most likely: it appends in a loop
        rest, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()
    acked = [int(line) for line in (out + rest).split(b"\n") if line]

    with DiskSpool(tmp_path) as spool:
        drained = _drain(spool)

    assert not list(tmp_path.glob("*.tmp"))
    found = [int(gzip.decompress(b.body).split()[1][2:]) for b in drained]
    # Every acknowledged append, in order; at most one more that was durable but not yet
    # acknowledged when the signal came.
    assert found == list(range(len(found)))
    assert len(acked) <= len(found) <= len(acked) + 1
    assert [b.points for b in drained] == [n % 7 + 1 for n in found]


def test_counters_are_consistent_when_read_from_another_thread(tmp_path):
    stop = threading.Event()
    snapshots: list[SpoolStats] = []
    problems: list[SpoolStats] = []

    def read_counters() -> None:
        for _ in range(1_000_000):
            if stop.is_set():
                return
            stats = spool.stats()
            snapshots.append(stats)
            if stats.size_bytes != stats.batches * SIZE or stats.points != stats.batches * 2:
                problems.append(stats)
            # The single properties must not raise mid-update either.
            _ = (spool.size_bytes, spool.batches, spool.points, spool.dropped_points)
            spool.oldest_age_s(datetime.now(UTC))

    with DiskSpool(tmp_path, max_bytes=10 * SIZE) as spool:
        reader = threading.Thread(target=read_counters, name="counter-reader")
        reader.start()
        try:
            for n in range(60):
                spool.append(_sized(n), points=2)
                if n % 3 == 0:
                    batch = spool.peek()
                    assert batch is not None
                    spool.remove(batch)
        finally:
            stop.set()
            reader.join(timeout=10)
        assert not reader.is_alive()
        final = spool.stats()

    assert problems == []
    assert len(snapshots) > 10
    dropped = [s.dropped_points for s in snapshots]
    assert dropped == sorted(dropped)  # cumulative: never goes back
    assert final.dropped_points > 0
    assert final.points + final.dropped_points + 2 * 20 == 60 * 2  # 20 removed after writing
