"""Scenario model: devices plus a timeline of steps at scenario offsets."""

from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gridwatch.simulators._names import CameraEvent, ElevatorFault
from gridwatch.simulators._specs import DeviceSpec, with_params


class _StepBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at_s: Annotated[float, Field(ge=0)]
    device: str


class SetStep(_StepBase):
    """Change a device's conditions from now on (rain rate, wind, drift, mode …)."""

    action: Literal["set"]
    params: Annotated[dict[str, Any], Field(min_length=1)]


class FaultStep(_StepBase):
    """An elevator reports a fault; stalling faults also stop the car where it is."""

    action: Literal["fault"]
    fault: ElevatorFault
    code: str | None = None


class ClearFaultStep(_StepBase):
    """An elevator is released (rescue done): the car levels to a landing and opens."""

    action: Literal["clear_fault"]


class DetectStep(_StepBase):
    """A camera reports a detection."""

    action: Literal["detect"]
    event: CameraEvent
    confidence: Annotated[float, Field(ge=0, le=1)]
    object_count: Annotated[int, Field(ge=0)] | None = 1
    snapshot: bool = True


class ResetCounterStep(_StepBase):
    """A rain gauge loses power: unreported water is lost and its counter restarts at 0."""

    action: Literal["reset_counter"]


class OfflineStep(_StepBase):
    """The device drops its connection without DISCONNECT, so the broker publishes its will."""

    action: Literal["offline"]


class OnlineStep(_StepBase):
    """The device reconnects and publishes `online` again."""

    action: Literal["online"]


Step = Annotated[
    SetStep | FaultStep | ClearFaultStep | DetectStep | ResetCounterStep | OfflineStep | OnlineStep,
    Field(discriminator="action"),
]
STEP_ACTIONS = frozenset(
    {"set", "fault", "clear_fault", "detect", "reset_counter", "offline", "online"}
)


class Scenario(BaseModel):
    """A validated scenario: who the devices are and what happens to them when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    start: AwareDatetime | None = None
    duration_s: Annotated[float, Field(gt=0)] | None = None
    repeat_every_s: Annotated[float, Field(gt=0)] | None = None
    devices: tuple[DeviceSpec, ...]
    timeline: tuple[Step, ...] = ()

    @field_validator("devices")
    @classmethod
    def _some_devices(cls, devices: tuple[DeviceSpec, ...]) -> tuple[DeviceSpec, ...]:
        # A validator rather than min_length, which would also fire when every device is
        # invalid and bury the real errors under a misleading "no devices".
        if not devices:
            raise ValueError("a scenario needs at least one device")
        return devices

    @model_validator(mode="after")
    def _timeline_fits_devices(self) -> Self:
        # One message per problem, each already naming its field, so the loader can print
        # them all at once instead of making the author fix one error per run.
        problems = _duplicate_ids(self)
        known = {device.id: device for device in self.devices}
        order = sorted(range(len(self.timeline)), key=lambda index: self.timeline[index].at_s)
        for index in order:
            step = self.timeline[index]
            where = f"timeline[{index}]"
            spec = known.get(step.device)
            if spec is None:
                problems.append(
                    f"{where}.device: unknown device {step.device!r} "
                    f"(devices: {', '.join(sorted(known))})"
                )
                continue
            if step.action not in type(spec).ACTIONS:
                allowed = ", ".join(sorted(type(spec).ACTIONS))
                problems.append(
                    f"{where}.action: {step.action!r} does not apply to {spec.kind} "
                    f"{spec.id} (allowed: {allowed})"
                )
            if self.repeat_every_s is not None and step.at_s >= self.repeat_every_s:
                problems.append(f"{where}.at_s: must be below repeat_every_s in a repeating one")
            if isinstance(step, SetStep):
                # Applied in time order, as at run time, so each step is checked against the
                # conditions it really changes.
                try:
                    known[step.device] = with_params(spec, step.params)
                except ValidationError as err:
                    problems.extend(
                        f"{where}.params.{_dotted(error['loc'])}: {error['msg']}"
                        for error in err.errors()
                    )
                except ValueError as err:
                    problems.append(f"{where}.params: {err}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def device(self, sensor_id: str) -> DeviceSpec:
        """Return the device with this id (KeyError if there is none)."""
        for device in self.devices:
            if device.id == sensor_id:
                return device
        raise KeyError(sensor_id)


def _duplicate_ids(scenario: Scenario) -> list[str]:
    seen: set[str] = set()
    problems: list[str] = []
    for index, device in enumerate(scenario.devices):
        if device.id in seen:
            problems.append(f"devices[{index}].id: duplicate device id {device.id!r}")
        seen.add(device.id)
    return problems


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(params)"
