"""`gridwatch demo` as a user runs it: a case within a minute, and Ctrl-C stops everything."""

import re
import signal
import time

import httpx
import pytest

from tests.e2e.process import GridwatchProcess
from tests.servers.ports import free_port

pytestmark = pytest.mark.slow

CASE_TIMEOUT_S = 60.0


@pytest.mark.parametrize("speed", ["10"])
def test_demo_opens_a_rain_case_and_stops_on_ctrl_c(tmp_path, speed):
    port = free_port()
    env = {"GRIDWATCH_HTTP_PORT": str(port), "GRIDWATCH_DATA_DIR": str(tmp_path / "var")}
    demo = GridwatchProcess(
        ["demo", "--embedded-broker", "--speed", speed], env=env, log_path=tmp_path / "demo.log"
    )
    with demo:
        key = re.search(r"Admin key (\S+)", demo.output())
        assert key is not None, demo.output()
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        deadline = time.monotonic() + CASE_TIMEOUT_S
        cases: list[dict[str, object]] = []
        while not cases and time.monotonic() < deadline:
            time.sleep(0.5)
            response = httpx.get(f"{demo.api}/api/v1/cases", headers=headers, timeout=5.0)
            cases = response.json()["items"]
        # The quick demo rule opens first; the rainstorm rules of the default pack may follow.
        assert ("RG-001", "demo_rain_burst") in [(c["sensor_id"], c["rule_id"]) for c in cases]
        assert {c["sensor_id"] for c in cases} == {"RG-001"}
        assert "embedded broker" in demo.output()
        # The Modbus devices are polled into the same store.
        for sensor_id in ("BB-M01", "LIFT-M01"):
            rows = httpx.get(
                f"{demo.api}/api/v1/sensors/{sensor_id}/readings", headers=headers, timeout=5.0
            ).json()["rows"]
            assert rows, f"no polled readings of {sensor_id}"
        assert "NEW CASE" in demo.output() or _console_catches_up(demo)
        assert demo.stop(signal.SIGINT) == 0, demo.output()
    assert "gridwatch demo stopped" in demo.output()


def _console_catches_up(demo: GridwatchProcess) -> bool:
    # The console polls the API once a second; give it two more polls.
    for _ in range(10):
        time.sleep(0.3)
        if "NEW CASE" in demo.output():
            return True
    return False
