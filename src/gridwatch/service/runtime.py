"""The running service: MQTT source, webhook relay and HTTP API under one task group."""

import asyncio
import contextlib
import gc
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import uvicorn
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gridwatch.adapters.modbus import ModbusPoller
from gridwatch.adapters.mqtt import MqttSource
from gridwatch.api import ApiContext, create_app
from gridwatch.api.context import DeviceProbe
from gridwatch.api.keys import digest
from gridwatch.cases.policy import CasePolicy, load_case_policy
from gridwatch.cases.routing import RoutingError
from gridwatch.dispatch.feed import DispatchFeed
from gridwatch.dispatch.relay import WebhookRelay
from gridwatch.dispatch.subscriptions import ensure_subscription
from gridwatch.domain import Sensor
from gridwatch.gateway.alarms import AlarmService
from gridwatch.gateway.db import create_engine, migrate, session_factory
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.pipeline import IngestPipeline
from gridwatch.gateway.registry import SensorRegistry, load_sensors_file
from gridwatch.gateway.rejects import RejectLog
from gridwatch.gateway.settings import Settings, SettingsError
from gridwatch.gateway.telemetry import LatestReadings
from gridwatch.registry.catalog import device_profiles
from gridwatch.registry.grid_store import parse_geojson, replace_grid
from gridwatch.registry.profiles import DeviceProfile
from gridwatch.registry.service import upsert_sensors
from gridwatch.rules import DEFAULT_PACK_DIR, RulePack, load_pack_dir
from gridwatch.service.case_sink import DatabaseCaseSink
from gridwatch.service.modbus import (
    PollRecorder,
    modbus_device,
    polled_devices,
    register_maps,
)
from gridwatch.service.registry_sync import RegistrySync
from gridwatch.service.routing_sync import RoutingSync
from gridwatch.service.rules_runtime import RulesRuntime
from gridwatch.service.supervision import Supervisor
from gridwatch.service.telemetry import Telemetry, open_telemetry
from gridwatch.service.vendor_codecs import vendor_codecs

log = logging.getLogger("gridwatch.service")

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
WEBHOOK_TIMEOUT_S = 10.0


class _Server(uvicorn.Server):
    """Uvicorn without its own signal handling: the service decides when to stop."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave SIGINT and SIGTERM to the caller."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start listening, then tell whoever waits."""
        await super().startup(sockets)
        self.listening.set()


@dataclass
class _Parts:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pipeline: IngestPipeline
    relay: WebhookRelay
    source: MqttSource
    server: _Server
    rules: RulesRuntime
    telemetry: Telemetry
    poller: ModbusPoller
    supervisor: Supervisor
    feed: DispatchFeed


class Service:
    """gridwatch as one process; `run` returns after `stop` is set and everything has shut down."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.registry = SensorRegistry()
        self.latest = LatestReadings()
        self.rejects = RejectLog(settings.data_dir / "rejected.jsonl")
        self._mqtt_connected = False
        self.started = asyncio.Event()
        self.profiles: dict[str, DeviceProfile] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down gracefully."""
        settings = self.settings
        self.case_policy = case_policy(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Refused here, before anything starts: a broken rule file must not become a service
        # that raises nothing.
        pack = load_pack_dir(settings.rules_dir or DEFAULT_PACK_DIR)
        self.profiles = device_profiles(settings.profiles_dir)
        self._register_maps = register_maps(self.profiles)
        engine = create_engine(settings.resolved_database_url)
        try:
            await migrate(engine)
            sessions = session_factory(engine)
            await self._subscribe_configured_webhook(sessions)
            self.registry_sync = RegistrySync(sessions=sessions, registry=self.registry)
            await self._load_grid_file(sessions)
            await self._load_sensors_file(sessions)
            await self.registry_sync.reload()
            self.routing_sync = RoutingSync(sessions=sessions, routing=self.case_policy.routing)
            await self._load_stored_routing()
            async with (
                httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as http,
                httpx.AsyncClient(timeout=settings.influx_timeout_s) as influx_http,
                open_telemetry(
                    settings, metrics=self.metrics, rejects=self.rejects, http=influx_http
                ) as telemetry,
            ):
                parts = self._build(engine, sessions, pack, http, telemetry)
                log.info(
                    "gridwatch started: %d sensors, %d rules, mqtt %s:%d, telemetry %s, "
                    "api http://%s:%d",
                    len(self.registry), len(pack.rules), parts.source.endpoint.host,
                    parts.source.endpoint.port, telemetry.description, settings.http_host,
                    settings.http_port,
                )  # fmt: skip
                _tune_garbage_collector()
                await self._supervise(parts, stop)
        finally:
            await engine.dispose()

    def _build(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        pack: RulePack,
        http: httpx.AsyncClient,
        telemetry: Telemetry,
    ) -> _Parts:
        settings = self.settings
        relay = WebhookRelay(
            sessions=sessions,
            http=http,
            metrics=self.metrics,
            max_attempts=settings.webhook_max_attempts,
            lease_s=settings.webhook_lease_s,
        )
        feed = DispatchFeed(sessions=sessions)

        def committed() -> None:
            # Case events are committed: the relay delivers them, the queue numbers them.
            relay.notify()
            feed.notify()

        self.alarms = AlarmService(
            rules=pack,
            registry=self.registry,
            cases=DatabaseCaseSink(
                sessions=sessions,
                metrics=self.metrics,
                on_committed=committed,
                policy=self.case_policy,
            ),
            metrics=self.metrics,
        )
        rules = RulesRuntime(
            alarms=self.alarms,
            rules_dir=settings.rules_dir or DEFAULT_PACK_DIR,
            state_path=settings.data_dir / "rules-state.json",
        )
        rules.restore()
        pipeline = IngestPipeline(
            topic_prefix=settings.mqtt_topic_prefix,
            registry=self.registry,
            writer=telemetry.writer,
            latest=self.latest,
            alarms=self.alarms,
            rejects=self.rejects,
            metrics=self.metrics,
            vendor_codecs=vendor_codecs(self.profiles),
        )

        source = MqttSource(
            url=settings.mqtt_url or DEFAULT_MQTT_URL,
            topic_prefix=settings.mqtt_topic_prefix,
            client_id=settings.mqtt_client_id,
            handler=pipeline.handle_batch,
            on_connection=self._set_connected,
            on_idle=telemetry.writer.flush_now,
        )
        admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
        if admin_key is None:
            log.warning("GRIDWATCH_ADMIN_KEY is not set: every /api/v1 call will be refused")
        context = ApiContext(
            sessions=sessions,
            registry=self.registry,
            latest=self.latest,
            telemetry=telemetry.reader,
            rejects=self.rejects,
            metrics=self.metrics,
            admin_key_digest=digest(admin_key) if admin_key else None,
            alarms=self.alarms,
            reload_rules=rules.reload,
            sensors_changed=self.registry_sync.reload,
            profiles=self.profiles,
            strict_location=settings.strict_location,
            readiness=lambda: self._readiness(engine, telemetry),
            probe_device=self._probe_device,
            case_policy=self.case_policy,
            dispatch_feed=feed,
            events_committed=committed,
        )
        config = uvicorn.Config(
            create_app(context),
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            lifespan="off",
        )
        self._pipeline = pipeline
        self._poll_recorder = PollRecorder(metrics=self.metrics, rejects=self.rejects)
        poller = ModbusPoller(
            handler=pipeline.handle_polled,
            observer=self._poll_recorder,
            offline_after=settings.modbus_offline_after,
            backoff_max_s=settings.modbus_backoff_max_s,
        )
        self.poller = poller
        self.registry_sync.on_change = self._registry_changed
        self._registry_changed()
        supervisor = Supervisor(
            sessions=sessions,
            policy=self.case_policy,
            interval_s=settings.supervision_interval_s,
            on_committed=committed,
            metrics=self.metrics,
        )
        return _Parts(
            engine,
            sessions,
            pipeline,
            relay,
            source,
            _Server(config),
            rules,
            telemetry,
            poller,
            supervisor,
            feed,
        )

    async def _probe_device(self, sensor: Sensor) -> DeviceProbe | None:
        device = modbus_device(sensor, self._register_maps)
        if device is None:
            return None
        probe = await self.poller.probe(device)
        if probe.failure is not None:
            self._poll_recorder.failed(probe.failure)
            failure = probe.failure
            return DeviceProbe(probe.registers, f"{failure.reason.value}: {failure.detail}")
        await self._pipeline.handle_polled(probe.readings)
        return DeviceProbe(probe.registers, None)

    def _registry_changed(self) -> None:
        # Registry changes (API, CLI, another process) arrive through the sync. The alarm
        # service takes each sensor's new status (one put into maintenance raises nothing,
        # not even from the ticks); a new Modbus sensor starts polling, a changed one
        # restarts, a retired one stops.
        self.alarms.sensors_changed()
        devices = polled_devices(self.registry, self._register_maps)
        self.poller.update(devices)
        self.metrics.modbus_devices.set(len(devices))

    async def _supervise(self, parts: _Parts, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            workers = [
                group.create_task(parts.source.run(), name="mqtt-source"),
                group.create_task(parts.poller.run(), name="modbus-poller"),
                group.create_task(parts.telemetry.run(self.metrics), name="telemetry"),
                group.create_task(parts.relay.run(), name="webhook-relay"),
                group.create_task(self.registry_sync.run(), name="registry-sync"),
                group.create_task(self.routing_sync.run(), name="routing-sync"),
                group.create_task(parts.rules.run_ticks(), name="rules-ticks"),
                group.create_task(parts.rules.run_checkpoints(), name="rules-checkpoints"),
                group.create_task(parts.rules.run_watch(), name="rules-watch"),
                group.create_task(parts.supervisor.run(), name="case-supervision"),
                group.create_task(parts.feed.run(), name="dispatch-sequencer"),
            ]
            serving = group.create_task(parts.server.serve(), name="http-api")
            listening = asyncio.create_task(parts.server.listening.wait())
            await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
            listening.cancel()
            self.started.set()
            await stop.wait()
            log.info("gridwatch stopping")
            # Long polls answer with what they have instead of holding the shutdown up.
            parts.feed.close()
            parts.server.should_exit = True
            for worker in workers:
                worker.cancel()
        # After ingest has stopped: points of the last batches are stored (their messages were
        # not acknowledged, so the broker redelivers them and the store overwrites the same
        # points), and the checkpoint holds every reading acknowledged.
        await parts.telemetry.writer.drain()
        await parts.rules.checkpoint()

    def _set_connected(self, connected: bool) -> None:
        self._mqtt_connected = connected
        self.metrics.mqtt_connected.set(1 if connected else 0)

    async def _readiness(self, engine: AsyncEngine, telemetry: Telemetry) -> dict[str, bool]:
        database = True
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (OSError, SQLAlchemyError):
            database = False
        return {
            "database": database,
            "mqtt": self._mqtt_connected,
            "telemetry_store": await telemetry.ping(),
        }

    async def _load_stored_routing(self) -> None:
        # A table stored through the API replaces the routing file's, before any case opens.
        # One that no longer validates stops the start, as a bad routing file does.
        try:
            await self.routing_sync.refresh()
        except RoutingError as err:
            raise SettingsError(
                f"{err}; store a valid one with `gridwatch routing set FILE`, or drop it with "
                "`gridwatch routing clear` to use the routing file"
            ) from err

    async def _load_grid_file(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        # Like the sensors file, the grid file is declarative: it replaces the grid at start.
        if self.settings.grid_file is None:
            return
        units = parse_geojson(json.loads(self.settings.grid_file.read_text(encoding="utf-8")))
        async with sessions() as session, session.begin():
            await replace_grid(session=session, units=units)
        log.info("grid file %s: %d units", self.settings.grid_file, len(units))

    async def _load_sensors_file(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        # The sensors file is declarative: its entries are created or overwritten at start.
        if self.settings.sensors_file is None:
            return
        sensors = load_sensors_file(self.settings.sensors_file)
        async with sessions() as session, session.begin():
            changed = await upsert_sensors(session=session, sensors=sensors)
        log.info(
            "sensors file %s: %d sensors, %d changed",
            self.settings.sensors_file,
            len(sensors),
            changed,
        )

    async def _subscribe_configured_webhook(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        settings = self.settings
        if not settings.webhook_url:
            return
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
        if not secret:
            raise ValueError("webhook_url is set but webhook_secret is not (a whsec_... secret)")
        async with sessions() as session, session.begin():
            await ensure_subscription(session=session, url=settings.webhook_url, secret=secret)
        log.info("webhook subscription ready url=%s", settings.webhook_url)


def case_policy(settings: Settings) -> CasePolicy:
    """The deadline, calendar, routing and reopen policy the settings name, or SettingsError.

    Read before anything starts: a bad deadlines, calendar or routing file stops the service
    with the loader's message, which names the file and the field.
    """
    try:
        return load_case_policy(
            deadlines_file=settings.deadlines_file,
            calendar_file=settings.calendar_file,
            routing_file=settings.routing_file,
            reopen_within=timedelta(hours=settings.reopen_within_h),
        )
    except ValueError as err:
        raise SettingsError(str(err)) from err


def _tune_garbage_collector() -> None:
    # Ingest allocates a few short-lived containers per message; with the default threshold
    # the collector runs every 700 allocations and walks the long-lived registry and rule
    # state each time it reaches the older generations. Freezing what start-up built and
    # collecting young objects less often gave 4-8% more ingest throughput.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
