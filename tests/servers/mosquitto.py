"""A real Mosquitto broker on a free loopback port, configured from the shipped gridwatch.conf."""

import getpass
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.servers.ports import LOOPBACK, free_port, port_accepts, wait_until_free

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "gridwatch.conf"
"""The broker configuration gridwatch ships; tests run with its queue and persistence settings."""

# Options the test broker sets itself: where it listens, stores and logs, who it runs as, and
# who may connect. Everything else in the shipped file is kept as written.
_REPLACED_OPTIONS = frozenset(
    {
        "listener",
        "port",
        "bind_address",
        "persistence_location",
        "log_dest",
        "log_type",
        "log_timestamp_format",
        "pid_file",
        "user",
        "allow_anonymous",
        "password_file",
        "acl_file",
    }
)

_RUNNING = re.compile(r"mosquitto version \S+ running")
_START_ATTEMPTS = 3  # new free ports tried when another process grabbed the chosen one
_STOP_TIMEOUT_S = 10.0  # SIGTERM makes Mosquitto save its database; a large one takes a moment


class MosquittoNotFoundError(RuntimeError):
    """The mosquitto executable is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "mosquitto not found on PATH or at /usr/sbin/mosquitto; "
            "install the Debian package `mosquitto` (apt-get install -y mosquitto)"
        )


class MosquittoStartError(RuntimeError):
    """Mosquitto exited or did not accept connections in time; carries its log."""

    def __init__(self, reason: str, *, log_path: Path, log_tail: str) -> None:
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        super().__init__(f"mosquitto {reason}; log {log_path}:\n{log_tail}")


def find_mosquitto() -> str:
    """Return the path of the mosquitto executable or raise MosquittoNotFoundError."""
    # Debian installs the broker in /usr/sbin, which is not on an unprivileged user's PATH.
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise MosquittoNotFoundError
    return found


def read_options(config: Path) -> list[tuple[str, str]]:
    """Parse a mosquitto.conf into (option, value) pairs in file order, comments dropped."""
    options: list[tuple[str, str]] = []
    for raw in config.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        options.append((name, value.strip()))
    return options


def derive_config(
    *,
    base: Path,
    port: int,
    persistence_dir: Path,
    password_file: Path | None = None,
    acl_file: Path | None = None,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """Return the test broker's config: `base` with a loopback listener and temporary paths."""
    overrides = dict(overrides or {})
    if clash := sorted(_REPLACED_OPTIONS & overrides.keys()):
        raise ValueError(f"options {clash} are set by the test broker itself, not by overrides")
    lines = [f"# Derived from {base} by tests/servers/mosquitto.py; do not edit."]
    for name, value in read_options(base):
        if name in _REPLACED_OPTIONS:
            continue
        lines.append(f"{name} {overrides.pop(name, value)}")
    lines.extend(f"{name} {value}" for name, value in overrides.items())
    lines += [
        # Trailing slash: older brokers join location and file name without a separator.
        f"persistence_location {persistence_dir}/",
        # Logging goes to stderr, which the server object sends to its log file.
        "log_dest stderr",
        "log_type all",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        # Run as whoever runs the tests: as root, Mosquitto would otherwise switch to the
        # `mosquitto` user, which cannot write the test's temporary directory.
        f"user {getpass.getuser()}",
        # Tests connect without credentials unless they test authentication itself.
        f"allow_anonymous {'false' if password_file else 'true'}",
    ]
    if password_file is not None:
        lines.append(f"password_file {password_file}")
    if acl_file is not None:
        lines.append(f"acl_file {acl_file}")
    lines.append(f"listener {port} {LOOPBACK}")
    return "\n".join(lines) + "\n"


class MosquittoServer:
    """A Mosquitto process on 127.0.0.1 with the shipped settings; a context manager."""

    def __init__(
        self,
        *,
        workdir: Path,
        port: int | None = None,
        base_config: Path = SHIPPED_CONFIG,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        overrides: Mapping[str, str] | None = None,
        executable: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        if start_timeout <= 0:
            raise ValueError(f"start_timeout must be positive, got {start_timeout}")
        if not base_config.is_file():
            raise FileNotFoundError(f"mosquitto base config not found: {base_config}")
        self._executable = executable or find_mosquitto()
        self._workdir = workdir
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self._base_config = base_config
        self._password_file = password_file
        self._acl_file = acl_file
        self._overrides = dict(overrides or {})
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.persistence_dir = workdir / "persistence"
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"

    @property
    def host(self) -> str:
        """Loopback address the broker listens on."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """TCP port the broker listens on; kept across restart()."""
        return self._port

    @property
    def url(self) -> str:
        """Broker URL in gridwatch's MQTT_URL form."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, None when stopped."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def is_running(self) -> bool:
        """Tell whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and wait until its port accepts connections."""
        if self.is_running:
            raise RuntimeError(f"mosquitto already running on {self.url}")
        self._workdir.mkdir(parents=True, exist_ok=True)
        self.persistence_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._start_once()
            except MosquittoStartError as err:
                # Only a port this object picked may be swapped; a caller's port, or the port
                # of a broker being restarted, must stay the same.
                port_taken = "Address already in use" in err.log_tail
                if self._fixed_port or not port_taken or attempt == _START_ATTEMPTS:
                    raise
                self._port = free_port()
            else:
                return

    def stop(self) -> None:
        """Stop the broker with SIGTERM (it saves its database), killing it if it hangs."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_S)

    def restart(self) -> None:
        """Stop and start again on the same port with the same persistence directory."""
        self.stop()
        # Keep the port from now on, even if start() had picked it.
        self._fixed_port = True
        wait_until_free(self.host, self.port)
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        """Return the last lines of the broker log, for failure messages."""
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
        return f"<MosquittoServer {self.url} {state} log={self.log_path}>"

    def _start_once(self) -> None:
        """Write the config, spawn the broker, and wait (bounded) for its port."""
        self.config_path.write_text(
            derive_config(
                base=self._base_config,
                port=self._port,
                persistence_dir=self.persistence_dir,
                password_file=self._password_file,
                acl_file=self._acl_file,
                overrides=self._overrides,
            ),
            encoding="utf-8",
        )
        with self.log_path.open("ab") as log:
            # Appending keeps the log of earlier runs, so a restart test shows both lives.
            log.write(f"--- starting {self._executable} -c {self.config_path}\n".encode())
            log.flush()
            log_start = log.tell()
            self._process = subprocess.Popen(
                [self._executable, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self._workdir,
                # Its own process group: a Ctrl-C meant for pytest does not kill the broker
                # before stop() can make it save its database.
                start_new_session=True,
                env={**os.environ, "LC_ALL": "C"},
            )
        deadline = time.monotonic() + self._start_timeout
        for _ in range(int(self._start_timeout / 0.05) + 1):
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise MosquittoStartError(
                    f"exited with code {code} during start",
                    log_path=self.log_path,
                    log_tail=self.log_tail(),
                )
            # The port alone could belong to another process that took it first; the broker
            # logs "running" only after every listener is bound ("Opening ... listen socket"
            # comes before the bind and is no proof).
            if self._running_logged(log_start) and port_accepts(self.host, self._port):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        self.stop()
        raise MosquittoStartError(
            f"did not accept connections on {self.url} within {self._start_timeout:.1f} s",
            log_path=self.log_path,
            log_tail=self.log_tail(),
        )

    def _running_logged(self, log_start: int) -> bool:
        """Tell whether this run's log says the broker is up with its listeners bound."""
        with self.log_path.open("rb") as log:
            log.seek(log_start)
            written = log.read().decode("utf-8", errors="replace")
        return _RUNNING.search(written) is not None
