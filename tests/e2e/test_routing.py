"""End to end: the routing table changed through one `gridwatch run`, seen by another on the
same database, kept over a restart, and changed from the `gridwatch routing` command."""

import os
import subprocess

import httpx
import pytest
import yaml

from tests.e2e.process import ADMIN_KEY, GRIDWATCH, GridwatchProcess, service_env, wait_until

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
RULES = "rules: []\n"
GRID = "110101001001001"
FILE_UNIT, API_UNIT, CLI_UNIT = "file-unit", "api-unit", "cli-unit"


def _table(unit: str) -> dict[str, object]:
    return {"routes": [{"category": "event:04*", "grid": "110101", "unit": unit}]}


def _unit(process: GridwatchProcess) -> str | None:
    # The preview reads the table in force in that process, without asking the database.
    params = {"category": "event:0404", "grid": GRID}
    answer = httpx.get(process.api + "/api/v1/routing/route", params=params, headers=AUTH)
    unit: str | None = answer.json()["unit"]
    return unit


def _gridwatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRIDWATCH), *args], capture_output=True, text=True, timeout=60, check=False,
        env=os.environ | env,
    )  # fmt: skip


@pytest.fixture
def envs(tmp_path, mosquitto, database_url):
    routing_file = tmp_path / "routing.yaml"
    routing_file.write_text(yaml.safe_dump(_table(FILE_UNIT)))
    # Two services of their own (data, port, MQTT session) on one database.
    envs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        env = service_env(
            tmp_path / name, mqtt_url=mosquitto.url, database_url=database_url, rules=RULES
        )
        envs.append(env | {"GRIDWATCH_ROUTING_FILE": str(routing_file)})
    return envs


def test_a_table_put_to_one_gridwatch_routes_in_another_and_outlives_a_restart(tmp_path, envs):
    a = GridwatchProcess(["run"], env=envs[0], log_path=tmp_path / "a.log")
    b = GridwatchProcess(["run"], env=envs[1], log_path=tmp_path / "b.log")
    with a, b:
        shown = httpx.get(a.api + "/api/v1/routing", headers=AUTH)
        assert (shown.json()["source"], shown.headers["ETag"]) == ("file", '"0"')

        put = httpx.put(
            a.api + "/api/v1/routing", json=_table(API_UNIT), headers=AUTH | {"If-Match": '"0"'}
        )

        assert put.status_code == 200, put.text
        assert _unit(a) == API_UNIT  # at once here
        wait_until(lambda: _unit(b) == API_UNIT, what="the other process to poll", timeout=10)
        report = {"category": "event:0404", "title": "Crowd at the gate", "grid": GRID}
        case = httpx.post(b.api + "/api/v1/cases", json=report, headers=AUTH).json()
        assert (case["status"], case["unit"]) == ("dispatched", API_UNIT)
        assert a.stop() == 0, a.output()
        assert b.stop() == 0, b.output()

    with GridwatchProcess(["run"], env=envs[0], log_path=tmp_path / "a2.log") as again:
        assert _unit(again) == API_UNIT
        # The command line changes it too, and the running service takes it within a poll.
        cli_file = tmp_path / "cli-routing.yaml"
        cli_file.write_text(yaml.safe_dump(_table(CLI_UNIT)))
        stale = _gridwatch(envs[0], "routing", "set", str(cli_file), "--version", "0")
        assert (stale.returncode, "version 1" in stale.stderr) == (1, True)
        stored = _gridwatch(envs[0], "routing", "set", str(cli_file), "--version", "1")
        assert stored.returncode == 0, stored.stderr
        wait_until(lambda: _unit(again) == CLI_UNIT, what="the service to poll", timeout=10)
        printed = _gridwatch(envs[0], "routing", "show")
        assert printed.stdout.startswith("# source: api, version 2, changed ")
        assert yaml.safe_load(printed.stdout)["routes"][0]["unit"] == CLI_UNIT

        dropped = httpx.delete(
            again.api + "/api/v1/routing", headers=AUTH | {"If-Match": '"2"'}
        ).json()

        assert (dropped["source"], dropped["version"]) == ("file", 3)
        assert _unit(again) == FILE_UNIT
        assert again.stop() == 0, again.output()
