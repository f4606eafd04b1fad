"""The InfluxDB server fixture starts, keeps ports and data across restarts, and fails loudly."""

import socket
from pathlib import Path

import httpx
import pytest

from tests.servers.influxdb import (
    InfluxDatabase,
    InfluxDBServer,
    InfluxDBStartError,
    series_values,
    unique_database_name,
)
from tests.servers.ports import LOOPBACK, port_accepts


def _write(server: InfluxDBServer, db: str, body: str) -> None:
    """Write line protocol and check that InfluxDB took all of it."""
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        response = client.post(
            f"{server.url}/write", params={"db": db, "precision": "ns"}, content=body.encode()
        )
    assert response.status_code == httpx.codes.NO_CONTENT, response.text


def _values(server: InfluxDBServer, db: str) -> list[object]:
    """Every value of field `v` in measurement `m`, oldest first."""
    return [row["v"] for row in series_values(server.query('SELECT "v" FROM "m"', db))]


def test_session_server_writes_and_queries(
    influxdb: InfluxDBServer, influx_database: InfluxDatabase
) -> None:
    """The session server is up on loopback; a fresh database takes a write and returns it."""
    assert influxdb.url == f"http://127.0.0.1:{influxdb.port}"
    assert influx_database.url == influxdb.url
    _write(influxdb, influx_database.name, "m,sensor_id=s1 v=1.5 1000000000")
    assert _values(influxdb, influx_database.name) == [1.5]


def test_stop_start_and_restart_keep_ports_and_data(fresh_influxdb: InfluxDBServer) -> None:
    """Stopped, started and restarted, influxd is back at the same URL with the data written."""
    server = fresh_influxdb
    db = unique_database_name()
    server.create_database(db)
    _write(server, db, "m v=1i 1000000000")
    url, rpc_port = server.url, server.rpc_port

    server.stop()
    assert not server.is_running
    assert not port_accepts(server.host, server.port)
    server.start()
    _write(server, db, "m v=2i 2000000000")
    server.restart()

    assert (server.url, server.rpc_port) == (url, rpc_port)
    assert _values(server, db) == [1, 2]


def test_killed_server_replays_its_wal(fresh_influxdb: InfluxDBServer) -> None:
    """A SIGKILLed influxd loses no acknowledged write: the WAL is replayed on start."""
    server = fresh_influxdb
    db = unique_database_name()
    server.create_database(db)
    _write(server, db, "\n".join(f"m v={n}i {n}000000000" for n in range(1, 101)))

    server.kill()
    assert server.pid is None
    server.start()

    assert _values(server, db) == list(range(1, 101))


def test_taken_port_moves_to_a_free_one(tmp_path: Path) -> None:
    """When another process holds the chosen port, start() retries on new free ports."""
    server = InfluxDBServer(workdir=tmp_path)
    taken = server.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((LOOPBACK, taken))
        squatter.listen()
        with server:
            assert server.port != taken
            assert "address already in use" in server.log_path.read_text(encoding="utf-8")
            server.create_database(unique_database_name())


def test_fixed_port_taken_fails_with_the_log(tmp_path: Path) -> None:
    """A caller's port is never swapped: start() fails and the error carries influxd's log."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = InfluxDBServer(workdir=tmp_path, port=port)
        with pytest.raises(InfluxDBStartError, match="address already in use") as raised:
            server.start()
    assert raised.value.log_path == server.log_path
    assert not server.is_running
