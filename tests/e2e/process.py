"""Start gridwatch as a user would: the installed console script, configured by environment."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from tests.servers.ports import free_port

GRIDWATCH = Path(sys.executable).parent / "gridwatch"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class GridwatchProcess:
    """`gridwatch <args>` in a subprocess, its output in a log file; stopped with SIGINT."""

    def __init__(self, args: list[str], *, env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = os.environ | env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['GRIDWATCH_HTTP_PORT']}"

    def start(self, *, ready_path: str = "/readyz") -> None:
        """Start and wait until `ready_path` answers 200."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(GRIDWATCH), *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gridwatch exited early:\n{self.output()}")
            try:
                if httpx.get(self.api + ready_path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gridwatch not ready in {START_TIMEOUT_S}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Signal the process and return its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RuntimeError(f"gridwatch did not stop on {sig}:\n{self.output()}") from None
        return self.process.returncode

    def output(self, *, tail: int | None = 6000) -> str:
        """What the process printed: the last `tail` characters, or everything."""
        text = self.log_path.read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_until(predicate, *, what: str, timeout: float = 20.0, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy, and return that; bounded by time."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


ADMIN_KEY = "e2e-admin-key-0123456789abcdefgh"


def service_env(
    tmp_path: Path, *, mqtt_url: str, database_url: str, rules: str, **extra: str
) -> dict[str, str]:
    """The environment of a `gridwatch run` of its own: data, topics, port, rules, admin key."""
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "pack.yaml").write_text(rules)
    return {
        "GRIDWATCH_DATA_DIR": str(tmp_path / "var"),
        "GRIDWATCH_DATABASE_URL": database_url,
        "GRIDWATCH_MQTT_URL": mqtt_url,
        "GRIDWATCH_MQTT_TOPIC_PREFIX": prefix,
        "GRIDWATCH_MQTT_CLIENT_ID": f"gateway-{prefix}",
        "GRIDWATCH_HTTP_PORT": str(free_port()),
        "GRIDWATCH_RULES_DIR": str(rules_dir),
        "GRIDWATCH_ADMIN_KEY": ADMIN_KEY,
    } | extra
