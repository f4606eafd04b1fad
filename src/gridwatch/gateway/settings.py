"""Settings from GRIDWATCH_* environment variables and an optional YAML file."""

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

# The YAML file is chosen at run time (--config or GRIDWATCH_CONFIG); the settings source
# hook is a classmethod, so the path reaches it through this variable.
_config_file: ContextVar[Path | None] = ContextVar("gridwatch_config_file", default=None)

MIN_ADMIN_KEY_LENGTH = 24


class SettingsError(ValueError):
    """Settings that cannot be used, naming the setting and the reason."""


class Settings(BaseSettings):
    """Every default works with no file: a SQLite database and embedded stores under data_dir."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_", extra="forbid", case_sensitive=False, frozen=True
    )

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("./var")
    database_url: str | None = None
    mqtt_url: str | None = None
    mqtt_topic_prefix: str = Field(default="gridwatch", pattern=r"^[^#+/][^#+]*$")
    mqtt_client_id: str = "gridwatch-gateway"
    influx_url: str | None = None
    influx_api: Literal["v1", "v2"] = "v1"
    influx_database: str = "gridwatch"
    influx_token: SecretStr | None = None
    influx_org: str | None = None
    influx_bucket: str | None = None
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_timeout_s: float = Field(default=10.0, gt=0, le=300)
    telemetry_batch_size: int = Field(default=5_000, ge=1, le=100_000)
    telemetry_batch_age_s: float = Field(default=1.0, gt=0, le=60)
    telemetry_max_in_flight: int = Field(default=2, ge=1, le=16)
    telemetry_spool_max_bytes: int = Field(default=1 << 30, ge=1 << 20)
    telemetry_retention_days: float = Field(default=7.0, gt=0, le=3650)
    modbus_offline_after: int = Field(default=3, ge=1, le=1000)
    modbus_backoff_max_s: float = Field(default=60.0, ge=1, le=3600)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    sensors_file: Path | None = None
    rules_dir: Path | None = None
    grid_file: Path | None = None
    profiles_dir: Path | None = None
    strict_location: bool = False
    admin_key: SecretStr | None = None
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_max_attempts: int = Field(default=12, ge=1)
    # How long a relay holds a delivery it sends; keep it above the webhook timeout (10 s)
    # plus recording, or a slow relay's deliveries are sent twice. Shorter: a crashed
    # process's deliveries go out sooner after its restart.
    webhook_lease_s: float = Field(default=30.0, gt=10.0, le=3600.0)
    # Cases: auto-dispatch routing (absent: every case is dispatched by hand), the time limits
    # and working calendar (absent: the shipped ones), the recurrence reopen window, and how
    # often supervision checks the deadlines.
    routing_file: Path | None = None
    deadlines_file: Path | None = None
    calendar_file: Path | None = None
    reopen_within_h: float = Field(default=24.0, ge=0, le=24 * 365)
    supervision_interval_s: float = Field(default=30.0, gt=0, le=3600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments win over the environment, which wins over the YAML file."""
        yaml_file = _config_file.get()
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if yaml_file is not None:
            sources += (YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),)
        return sources

    @model_validator(mode="after")
    def _influx_v2_needs_its_coordinates(self) -> Self:
        if self.influx_url and self.influx_api == "v2":
            missing = [
                name
                for name, value in (
                    ("influx_token", self.influx_token),
                    ("influx_org", self.influx_org),
                    ("influx_bucket", self.influx_bucket),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"influx_api v2 needs {', '.join(missing)}")
        if self.influx_token and (self.influx_username or self.influx_password):
            raise ValueError("influx_token and influx_username/_password exclude each other")
        if bool(self.influx_username) != bool(self.influx_password):
            raise ValueError("influx_username and influx_password go together")
        return self

    @model_validator(mode="after")
    def _refuse_weak_secrets_in_production(self) -> Self:
        if self.environment != "production":
            return self
        key = self.admin_key.get_secret_value() if self.admin_key else ""
        if key and len(key) < MIN_ADMIN_KEY_LENGTH:
            raise ValueError(f"admin_key must be at least {MIN_ADMIN_KEY_LENGTH} characters")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("webhook_secret is required with webhook_url in production")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The configured database, or a SQLite file in the data directory."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'gridwatch.db'}"


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Build settings from arguments, GRIDWATCH_* variables and the YAML file, in that order."""
    env_file = os.environ.get("GRIDWATCH_CONFIG")
    path = config_file or (Path(env_file) if env_file else None)
    if path is not None and not path.is_file():
        raise SettingsError(f"config file {path} does not exist")
    token = _config_file.set(path)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from err
    finally:
        _config_file.reset(token)
