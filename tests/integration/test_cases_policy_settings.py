"""The case policy from settings: defaults, files, and a service that refuses bad files."""

import asyncio
from datetime import timedelta

import pytest

from gridwatch.cases.routing import DEMO_ROUTING_PATH
from gridwatch.gateway.settings import SettingsError, load_settings
from gridwatch.service.runtime import Service


def test_the_defaults_need_no_file(monkeypatch):
    for name in ("ROUTING_FILE", "DEADLINES_FILE", "CALENDAR_FILE", "REOPEN_WITHIN_H",
                 "SUPERVISION_INTERVAL_S", "CONFIG"):  # fmt: skip
        monkeypatch.delenv(f"GRIDWATCH_{name}", raising=False)
    settings = load_settings()
    assert (settings.routing_file, settings.deadlines_file, settings.calendar_file) == (
        None, None, None,
    )  # fmt: skip
    assert (settings.reopen_within_h, settings.supervision_interval_s) == (24.0, 30.0)


def test_the_environment_names_the_files(monkeypatch):
    monkeypatch.setenv("GRIDWATCH_ROUTING_FILE", str(DEMO_ROUTING_PATH))
    monkeypatch.setenv("GRIDWATCH_REOPEN_WITHIN_H", "2")
    monkeypatch.setenv("GRIDWATCH_SUPERVISION_INTERVAL_S", "5")
    settings = load_settings()
    assert (settings.routing_file, settings.reopen_within_h, settings.supervision_interval_s) == (
        DEMO_ROUTING_PATH, 2.0, 5.0,
    )  # fmt: skip
    assert timedelta(hours=settings.reopen_within_h) == timedelta(hours=2)


def test_a_zero_supervision_interval_is_refused():
    with pytest.raises(SettingsError, match="supervision_interval_s"):
        load_settings(supervision_interval_s=0)


@pytest.mark.parametrize(
    ("option", "text", "names"),
    [
        ("routing_file", "routes:\n  - category: event:0401\n    grid: '1101'\n", "entry #1"),
        ("deadlines_file", "rules:\n  - category: '*'\n    dispatch: 5x\n", "rules.0.dispatch"),
        ("calendar_file", "timezone: Mars/Olympus\n", "timezone"),
    ],
)
async def test_the_service_refuses_to_start_with_a_bad_file(tmp_path, option, text, names):
    path = tmp_path / f"{option}.yaml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(data_dir=tmp_path / "var", **{option: path})

    with pytest.raises(SettingsError) as refused:
        await Service(settings).run(asyncio.Event())

    assert str(path) in str(refused.value)
    assert names in str(refused.value)
