"""The installer's CLI, end to end: import sensors and the grid, export broker credentials."""

import csv
import os
import subprocess
import time

import pytest

from gridwatch.registry.grid import DEMO_GRID_PATH
from tests.e2e.process import GRIDWATCH
from tests.servers.mosquitto import MosquittoNotFoundError, MosquittoServer
from tests.servers.mqtt_device import Device

pytestmark = pytest.mark.slow

SENSORS_CSV = """id,kind,grid,lat,lon,status
RG-1,rain_gauge,110101001001001,39.9289,116.4166,active
RG-2,rain_gauge,110101001001002,39.9312,116.4178,active
RG-3,rain_gauge,110101001001002,39.9312,116.4178,retired
"""
GATEWAY = "gateway"
DENIAL_WAIT_S = 0.5


@pytest.fixture
def cli_env(tmp_path):
    return os.environ | {
        "GRIDWATCH_DATA_DIR": str(tmp_path / "var"),
        "GRIDWATCH_MQTT_URL": f"mqtt://{GATEWAY}:gateway-secret@127.0.0.1:1883",
    }


def _gridwatch(env, *args):
    result = subprocess.run(
        [str(GRIDWATCH), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_exported_credentials_let_each_device_publish_only_as_itself(tmp_path, cli_env):
    (tmp_path / "sensors.csv").write_text(SENSORS_CSV)
    assert "imported 8 grid units" in _gridwatch(cli_env, "grid", "import", str(DEMO_GRID_PATH))
    assert "imported 3 sensors" in _gridwatch(
        cli_env, "sensors", "import", str(tmp_path / "sensors.csv")
    )
    out = tmp_path / "mosquitto"
    _gridwatch(cli_env, "mqtt-acl", "export", "--out", str(out))
    with (out / "new-credentials.csv").open() as file:
        passwords = {row["sensor_id"]: row["password"] for row in csv.DictReader(file)}
    assert sorted(passwords) == ["RG-1", "RG-2"]  # retired sensors get no credentials
    # A second export keeps the stored passwords: devices need no re-provisioning.
    first_passwd = (out / "gridwatch.passwd").read_text()
    (out / "new-credentials.csv").unlink()
    _gridwatch(cli_env, "mqtt-acl", "export", "--out", str(out))
    assert not (out / "new-credentials.csv").exists()
    assert [line.split(":")[0] for line in (out / "gridwatch.passwd").read_text().splitlines()] == [
        line.split(":")[0] for line in first_passwd.splitlines()
    ]
    try:
        broker = MosquittoServer(
            workdir=tmp_path / "broker",
            password_file=out / "gridwatch.passwd",
            acl_file=out / "gridwatch.acl",
        )
    except MosquittoNotFoundError as err:
        pytest.skip(str(err))
    with broker:
        gateway = Device(broker, GATEWAY, "gateway-secret")
        device = Device(broker, "RG-1", passwords["RG-1"])
        try:
            assert not gateway.connect().is_failure
            gateway.subscribe("gridwatch/+/telemetry")
            assert not device.connect().is_failure
            device.publish("gridwatch/RG-2/telemetry", b'{"rain_mm": 99}')
            device.publish("gridwatch/RG-1/telemetry", b'{"rain_mm": 1}')
            gateway.wait_for(b'{"rain_mm": 1}')
            time.sleep(DENIAL_WAIT_S)
            assert [topic for topic, _ in gateway.received] == ["gridwatch/RG-1/telemetry"]
        finally:
            device.close()
            gateway.close()
        impostor = Device(broker, "RG-1", "not-the-password")
        try:
            assert impostor.connect().is_failure
        finally:
            impostor.close()
