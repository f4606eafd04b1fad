"""The `gridwatch` command's own behaviour: errors a user sees, and the simulate command."""

import subprocess
import uuid

import pytest

from tests.e2e.process import GRIDWATCH

pytestmark = pytest.mark.slow


def _gridwatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRIDWATCH), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("http_port: lots\n", "http_port"),
        ("mqtt_url_typo: mqtt://x\n", "mqtt_url_typo"),
    ],
)
def test_bad_settings_exit_2_naming_the_setting(tmp_path, config, message):
    path = tmp_path / "gridwatch.yaml"
    path.write_text(config)
    result = _gridwatch("run", "--config", str(path))
    assert result.returncode == 2
    assert message in result.stderr


def test_a_bad_sensors_file_names_the_entry(tmp_path):
    sensors = tmp_path / "sensors.yaml"
    sensors.write_text("sensors:\n  - {id: RG-1, kind: rain_gauge, grid: '123'}\n")
    env = {"GRIDWATCH_SENSORS_FILE": str(sensors), "GRIDWATCH_DATA_DIR": str(tmp_path)}
    result = _gridwatch("run", env=env | {"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "sensor #1 (RG-1): grid" in result.stderr


def test_simulate_publishes_and_prints_a_summary(mosquitto):
    result = _gridwatch(
        "simulate", "entrapment", "--mqtt-url", mosquitto.url,
        "--prefix", f"cli-{uuid.uuid4().hex[:8]}", "--speed", "0", "--duration", "120",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "EL-201" in result.stdout
    assert "event=3" in result.stdout


def test_sensors_add_names_a_bad_field_without_a_traceback(tmp_path):
    env = {"GRIDWATCH_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = _gridwatch(
        "sensors", "add", "--id", "RG-9", "--kind", "rain_gauge", "--grid", "110101001001001",
        "--lat", "100", "--lon", "116.4", env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "location.lat: Input should be less than or equal to 90" in result.stderr
    assert "Traceback" not in result.stderr
