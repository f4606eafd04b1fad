"""A real InfluxDB 1.x (influxd) on free loopback ports, its files in a work directory."""

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from tests.servers.ports import LOOPBACK, free_port, wait_until_free

_START_ATTEMPTS = 3  # new free ports tried when another process grabbed a chosen one
_STOP_TIMEOUT_S = 15.0  # SIGTERM makes influxd close its shards; that is quick for test data
_POLL_S = 0.05
_ADDRESS_IN_USE = "address already in use"


class InfluxDBNotFoundError(RuntimeError):
    """The influxd executable is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "influxd not found on PATH or at /usr/bin/influxd; "
            "install the Debian package `influxdb` (apt-get install -y influxdb)"
        )


class InfluxDBStartError(RuntimeError):
    """influxd exited or did not answer /ping in time; carries its log."""

    def __init__(self, reason: str, *, log_path: Path, log_tail: str) -> None:
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        super().__init__(f"influxd {reason}; log {log_path}:\n{log_tail}")


def find_influxd() -> str:
    """Return the path of the influxd executable or raise InfluxDBNotFoundError."""
    found = shutil.which("influxd") or shutil.which("influxd", path="/usr/bin:/usr/local/bin")
    if found is None:
        raise InfluxDBNotFoundError
    return found


def render_config(*, workdir: Path, http_port: int, rpc_port: int) -> str:
    """Return an influxd TOML config: loopback listeners, files in `workdir`, quick to start."""
    return f"""# Written by tests/servers/influxdb.py; do not edit.
# Debian's build reads reporting-enabled, upstream reads reporting-disabled; unknown keys are
# ignored, so both keep usage reporting off.
reporting-enabled = false
reporting-disabled = true
# The RPC (backup/restore) service: loopback, on a port of its own.
bind-address = "{LOOPBACK}:{rpc_port}"

[meta]
  dir = "{workdir / "meta"}"
  logging-enabled = false

[data]
  dir = "{workdir / "data"}"
  wal-dir = "{workdir / "wal"}"
  query-log-enabled = false

[http]
  bind-address = "{LOOPBACK}:{http_port}"
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "info"
  suppress-logo = true

# Background services a test never waits for: off, so start-up and the log stay short and
# no _internal database appears.
[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[subscriber]
  enabled = false
"""


@dataclass(frozen=True, slots=True)
class InfluxDatabase:
    """A database of its own on a running InfluxDB."""

    url: str
    name: str


def unique_database_name(prefix: str = "gw_test") -> str:
    """A database name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class InfluxDBServer:
    """An influxd process on 127.0.0.1; a context manager. Ports and data survive restarts."""

    def __init__(
        self,
        *,
        workdir: Path,
        port: int | None = None,
        rpc_port: int | None = None,
        executable: str | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        if start_timeout <= 0:
            raise ValueError(f"start_timeout must be positive, got {start_timeout}")
        self._executable = executable or find_influxd()
        self._workdir = workdir
        # Ports chosen by the caller, or kept after the first start, never change: a test
        # stops the server and expects it back at the same URL.
        self._fixed_ports = port is not None or rpc_port is not None
        self._port = port if port is not None else free_port()
        self._rpc_port = rpc_port if rpc_port is not None else free_port()
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.config_path = workdir / "influxdb.conf"
        self.log_path = workdir / "influxd.log"

    @property
    def host(self) -> str:
        """Loopback address the server listens on."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """HTTP port; kept across stop/start and restart()."""
        return self._port

    @property
    def rpc_port(self) -> int:
        """RPC (backup/restore) port; kept like the HTTP port."""
        return self._rpc_port

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, None when stopped."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def is_running(self) -> bool:
        """Tell whether the influxd process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start influxd and wait until /ping answers; after a stop, on the same ports."""
        if self.is_running:
            raise RuntimeError(f"influxd already running on {self.url}")
        self._workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._start_once()
            except InfluxDBStartError as err:
                port_taken = _ADDRESS_IN_USE in err.log_tail
                if self._fixed_ports or not port_taken or attempt == _START_ATTEMPTS:
                    raise
                self._port, self._rpc_port = free_port(), free_port()
            else:
                self._fixed_ports = True
                return

    def stop(self) -> None:
        """Stop influxd with SIGTERM and wait for it, killing it if it hangs."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_S)

    def kill(self) -> None:
        """Kill influxd with SIGKILL (a crash: unflushed WAL segments are replayed on start)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(timeout=_STOP_TIMEOUT_S)

    def restart(self) -> None:
        """Stop and start again on the same ports with the same data."""
        self.stop()
        wait_until_free(self.host, self.port)
        wait_until_free(self.host, self.rpc_port)
        self.start()

    def create_database(self, name: str) -> None:
        """Create a database (idempotent)."""
        self.query(f"CREATE DATABASE {quote_identifier(name)}")

    def drop_database(self, name: str) -> None:
        """Drop a database (idempotent)."""
        self.query(f"DROP DATABASE {quote_identifier(name)}")

    def query(self, q: str, db: str | None = None) -> dict[str, Any]:
        """Run InfluxQL (POST /query, epoch=ns) and return the parsed JSON; raise on errors."""
        params = {"epoch": "ns"} | ({"db": db} if db is not None else {})
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            response = client.post(f"{self.url}/query", params=params, data={"q": q})
        body: dict[str, Any] = response.json()
        errors = [body["error"]] if "error" in body else []
        errors += [r["error"] for r in body.get("results", ()) if "error" in r]
        if response.status_code != httpx.codes.OK or errors:
            raise RuntimeError(f"InfluxQL {q!r} failed: HTTP {response.status_code} {errors}")
        return body

    def log_tail(self, lines: int = 40) -> str:
        """Return the last lines of the server log, for failure messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<InfluxDBServer {self.url} {state} log={self.log_path}>"

    def _start_once(self) -> None:
        """Write the config, spawn influxd, and wait (bounded) for /ping."""
        self.config_path.write_text(
            render_config(workdir=self._workdir, http_port=self._port, rpc_port=self._rpc_port),
            encoding="utf-8",
        )
        with self.log_path.open("ab") as log:
            # Appending keeps the log of earlier runs, so a restart test shows every life.
            log.write(f"--- starting {self._executable} -config {self.config_path}\n".encode())
            log.flush()
            log_start = log.tell()
            self._process = subprocess.Popen(
                [self._executable, "-config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self._workdir,
                # Its own process group: a Ctrl-C meant for pytest does not kill influxd
                # before stop() can shut it down.
                start_new_session=True,
                env={**os.environ, "LC_ALL": "C"},
            )
        deadline = time.monotonic() + self._start_timeout
        listening = re.compile(
            rf'msg="Listening on HTTP".*addr={re.escape(self.host)}:{self._port}\b'
        )
        # trust_env=False: a proxy from the environment must not see loopback requests.
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            for _ in range(int(self._start_timeout / _POLL_S) + 1):
                if self._process.poll() is not None:
                    code = self._process.returncode
                    self._process = None
                    raise InfluxDBStartError(
                        f"exited with code {code} during start",
                        log_path=self.log_path,
                        log_tail=self.log_tail(),
                    )
                # A /ping answer alone could come from another process that took the port
                # first; this run's log names the address only once influxd has bound it.
                if listening.search(self._log_since(log_start)) and _pings(client, self.url):
                    return
                if time.monotonic() >= deadline:
                    break
                time.sleep(_POLL_S)
        self.stop()
        raise InfluxDBStartError(
            f"did not answer {self.url}/ping within {self._start_timeout:.1f} s",
            log_path=self.log_path,
            log_tail=self.log_tail(),
        )

    def _log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")


def quote_identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _pings(client: httpx.Client, url: str) -> bool:
    """Tell whether url/ping answers 204 from an InfluxDB."""
    try:
        response = client.get(f"{url}/ping")
    except httpx.HTTPError:
        return False
    return (
        response.status_code == httpx.codes.NO_CONTENT and "X-Influxdb-Version" in response.headers
    )


def series_values(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of the first statement's series in a /query answer, as column->value dicts."""
    rows: list[dict[str, Any]] = []
    for series in body["results"][0].get("series", ()):
        columns = series["columns"]
        rows.extend(dict(zip(columns, values, strict=True)) for values in series["values"])
    return rows
