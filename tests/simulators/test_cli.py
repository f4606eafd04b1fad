"""The command line: bad input exits 2 with a clear message, an unreachable broker 1."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gridwatch.simulators.__main__ import main


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def broken_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text("devices: [{id: RG-1, kind: rain_gauge, interval_s: -5}]\n")
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "hurricane"], "hurricane: no shipped scenario by that name"),
        (["--scenario", "{broken}"], "broken.yaml: devices[0] (RG-1).interval_s: Input should be"),
        (["--scenario", "{missing}"], "missing.yaml: cannot read the file"),
        (["--scenario", "demo", "--mqtt-url", "http://x:1"], "MQTT URL must look like"),
        (["--replay", "{missing}"], "missing.yaml: cannot read"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(argv, message, broken_yaml, capsys):
    paths = {"broken": broken_yaml, "missing": broken_yaml.with_name("missing.yaml")}
    assert main([arg.format(**paths) for arg in argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--speed", "0", "--scenario", "demo"], [], ["--scenario"]])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


def test_unreachable_broker_exits_1(capsys):
    url = f"mqtt://127.0.0.1:{_closed_port()}"
    assert main(["--scenario", "demo", "--mqtt-url", url, "--duration", "5"]) == 1
    assert "sensor RG-001: cannot connect" in capsys.readouterr().err


def test_list_names_the_shipped_scenarios(capsys):
    assert main(["--list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["demo", "entrapment", "leaning_billboard", "noisy_threshold", "red_rainstorm"]


def test_python_dash_m_entry_point_exits_2_on_an_unknown_scenario():
    done = subprocess.run(
        [sys.executable, "-m", "gridwatch.simulators", "--scenario", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "no shipped scenario by that name" in done.stderr
