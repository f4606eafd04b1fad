"""The rules engine at run time: ticks, checkpoints, and hot reload of the rule files."""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gridwatch.gateway.alarms import AlarmService
from gridwatch.gateway.files import write_file_atomically
from gridwatch.rules import RuleEngine, RuleFileError, SnapshotError, load_pack_dir

log = logging.getLogger("gridwatch.rules")

TICK_S = 1.0
WATCH_S = 2.0
CHECKPOINT_S = 30.0


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """The outcome of a reload: the rules now in force, or why the files were refused."""

    loaded: bool
    rules: int
    error: str | None = None
    cleared: int = 0


class RulesRuntime:
    """The rules' life around the alarm service: time passing, restarts, rule file changes."""

    def __init__(self, *, alarms: AlarmService, rules_dir: Path, state_path: Path) -> None:
        self._alarms = alarms
        self._rules_dir = rules_dir
        self._state_path = state_path
        self._files = self._fingerprint()
        self._lock = asyncio.Lock()

    @property
    def engine(self) -> RuleEngine:
        """The alarm service's engine."""
        return self._alarms.engine

    def restore(self) -> None:
        """Resume the checkpointed state, so a restart neither re-raises nor forgets alarms."""
        if not self._state_path.exists():
            return
        try:
            self.engine.restore(self._state_path.read_bytes())
        except (SnapshotError, OSError) as err:
            log.warning("rule state %s not restored (%s); starting fresh", self._state_path, err)
            return
        log.info(
            "rule state restored from %s: %d active alarms",
            self._state_path, len(self.engine.active_alarms()),
        )  # fmt: skip

    async def checkpoint(self) -> None:
        """Write the engine state; serialised on the loop, written to disk off it."""
        data = self.engine.snapshot()
        await asyncio.to_thread(write_file_atomically, self._state_path, data.decode(), mode=0o600)

    async def tick(self, now: datetime) -> None:
        """Let time pass for the engine and apply what fires (deadman, held conditions)."""
        await self._alarms.tick(now)

    async def run_ticks(self) -> None:
        """Tick about once a second until cancelled."""
        while True:
            await asyncio.sleep(TICK_S)
            await self.tick(datetime.now(UTC))

    async def run_checkpoints(self) -> None:
        """Checkpoint periodically until cancelled."""
        while True:
            await asyncio.sleep(CHECKPOINT_S)
            await self.checkpoint()

    async def run_watch(self) -> None:
        """Reload when a rule file changes; a broken file leaves the running rules in force."""
        while True:
            await asyncio.sleep(WATCH_S)
            if self._fingerprint() != self._files:
                await self.reload()

    async def reload(self) -> ReloadReport:
        """Load the rule files again and swap them in whole, or refuse them whole."""
        async with self._lock:
            self._files = self._fingerprint()
            try:
                pack = load_pack_dir(self._rules_dir)
            except RuleFileError as err:
                log.warning("rule files refused, the running rules stay: %s", err)
                return ReloadReport(loaded=False, rules=len(self.engine.rules), error=str(err))
            events = self._alarms.replace_rules(pack, at=datetime.now(UTC))
            await self._alarms.apply_events(events)
            log.info("rules reloaded: %d rules, %d alarms cleared", len(pack.rules), len(events))
            return ReloadReport(loaded=True, rules=len(pack.rules), cleared=len(events))

    def _fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        return tuple(
            (path.name, stat.st_mtime_ns, stat.st_size)
            for path in sorted(self._rules_dir.glob("*.yaml"))
            for stat in [path.stat()]
        )
