"""Settings: defaults, environment, YAML file, precedence and clear errors."""

from pathlib import Path

import pytest

from gridwatch.gateway.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("GRIDWATCH_"):
            monkeypatch.delenv(name)


def test_defaults_need_no_file():
    settings = load_settings()
    assert settings.data_dir == Path("./var")
    assert settings.resolved_database_url == "sqlite+aiosqlite:///var/gridwatch.db"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8000)
    assert settings.mqtt_topic_prefix == "gridwatch"


def test_environment_then_yaml_file(tmp_path, monkeypatch):
    config = tmp_path / "gridwatch.yaml"
    config.write_text("http_port: 9100\nmqtt_topic_prefix: city\ninflux_api: v2\n")
    monkeypatch.setenv("GRIDWATCH_HTTP_PORT", "9200")
    monkeypatch.setenv("GRIDWATCH_ADMIN_KEY", "k" * 30)
    settings = load_settings(config)
    assert settings.http_port == 9200
    assert settings.mqtt_topic_prefix == "city"
    assert settings.influx_api == "v2"
    assert settings.admin_key is not None
    assert settings.admin_key.get_secret_value() == "k" * 30


def test_config_file_from_environment(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text("data_dir: /srv/gridwatch\n")
    monkeypatch.setenv("GRIDWATCH_CONFIG", str(config))
    assert load_settings().data_dir == Path("/srv/gridwatch")


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("http_port: 70000\n", "http_port"),
        ("mqtt_topic_prefix: 'a/#'\n", "mqtt_topic_prefix"),
        ("no_such_setting: 1\n", "no_such_setting"),
        ("environment: production\nadmin_key: short\n", "admin_key must be at least"),
    ],
)
def test_invalid_settings_name_the_setting(tmp_path, yaml_text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    with pytest.raises(SettingsError, match=message):
        load_settings(config)


def test_missing_config_file(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"influx_url": "http://127.0.0.1:8086", "influx_api": "v2"}, "influx_api v2 needs"),
        ({"influx_token": "t", "influx_username": "u", "influx_password": "p"}, "exclude"),
        ({"influx_username": "u"}, "go together"),
    ],
)
def test_influx_settings_that_cannot_work_are_refused_naming_them(overrides, problem):
    with pytest.raises(SettingsError, match=problem):
        load_settings(**overrides)
