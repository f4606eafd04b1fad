"""The simulators' exceptions: each carries its context and builds its own message."""

from collections.abc import Sequence


class SimulatorError(Exception):
    """Base class of every error the simulators raise on purpose."""


class ScenarioError(SimulatorError):
    """A scenario file that cannot be read or does not validate."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(f"{source}: {problem}" for problem in self.problems))


class RecordingError(SimulatorError):
    """A recorded feed (JSON lines) that cannot be read or has a bad line."""

    def __init__(self, path: str, problem: str, *, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {problem}")


class BrokerError(SimulatorError):
    """The MQTT broker refused, dropped or never answered a simulated device."""

    def __init__(self, broker: str, problem: str, *, sensor_id: str | None = None) -> None:
        self.broker = broker
        self.sensor_id = sensor_id
        self.problem = problem
        who = "" if sensor_id is None else f"sensor {sensor_id}: "
        super().__init__(f"{who}{problem} ({broker})")
