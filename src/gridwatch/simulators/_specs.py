"""Device descriptions: what a simulated device is, as validated data (one model per kind)."""

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridwatch.simulators._names import SENSOR_ID_PATTERN, CameraEvent, ElevatorFault, ElevatorMode

Fraction = Annotated[float, Field(ge=0, le=1)]

# Fields that define the device rather than its conditions: a timeline `set` step cannot change
# them, since a running model's state (tick grid, shaft geometry, counter mode) depends on them.
_IDENTITY_FIELDS = frozenset({"id", "kind", "interval_s", "phase_s"})


class _DeviceBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    FIXED_FIELDS: ClassVar[frozenset[str]] = _IDENTITY_FIELDS
    ACTIONS: ClassVar[frozenset[str]] = frozenset({"set", "offline", "online"})

    id: Annotated[str, Field(pattern=SENSOR_ID_PATTERN)]
    interval_s: Annotated[float, Field(gt=0, le=86_400)]
    phase_s: Annotated[float, Field(ge=0)] = 0.0


class RainGaugeSpec(_DeviceBase):
    """A tipping-bucket rain gauge reporting increments (`rain_mm`) or a counter (`total_mm`)."""

    FIXED_FIELDS: ClassVar[frozenset[str]] = _IDENTITY_FIELDS | {"mode", "sample_s"}
    ACTIONS: ClassVar[frozenset[str]] = _DeviceBase.ACTIONS | {"reset_counter"}

    kind: Literal["rain_gauge"]
    mode: Literal["increment", "total"] = "increment"
    tip_mm: Annotated[float, Field(gt=0, le=1)] = 0.2
    rate_mm_h: Annotated[float, Field(ge=0)] = 0.0
    jitter: Fraction = 0.2
    precip: Literal["rain", "snow"] | None = None
    initial_total_mm: Annotated[float, Field(ge=0)] = 0.0
    extra_report_mm: Annotated[float, Field(gt=0)] | None = None
    sample_s: Annotated[float, Field(gt=0)] = 60.0

    @model_validator(mode="before")
    @classmethod
    def _per_report(cls, data: Any) -> Any:
        # Scenario authors think in "mm per report"; the model integrates a rate, so convert.
        if not isinstance(data, dict) or "mm_per_report" not in data:
            return data
        data = dict(data)
        per_report = data.pop("mm_per_report")
        if "rate_mm_h" in data:
            raise ValueError("give either rate_mm_h or mm_per_report, not both")
        interval = data.get("interval_s")
        if not isinstance(per_report, int | float) or per_report < 0:
            raise ValueError(f"mm_per_report must be a number >= 0, not {per_report!r}")
        if isinstance(interval, int | float) and interval > 0:
            data["rate_mm_h"] = per_report * 3600.0 / interval
        return data

    @model_validator(mode="after")
    def _extra_reports_fit(self) -> Self:
        ticks = self.interval_s / self.sample_s
        if self.extra_report_mm is not None and abs(ticks - round(ticks)) > 1e-9:
            raise ValueError("interval_s must be a whole multiple of sample_s for extra reports")
        return self

    @property
    def tick_s(self) -> float:
        """How often the model wakes: per sample when extra reports are on, else per report."""
        return self.sample_s if self.extra_report_mm is not None else self.interval_s


class TiltSpec(_DeviceBase):
    """A billboard tilt sensor: baseline, noise, creep in degrees per hour, wind, battery."""

    kind: Literal["tilt"]
    baseline_x_deg: Annotated[float, Field(ge=-90, le=90)] = 0.0
    baseline_y_deg: Annotated[float, Field(ge=-90, le=90)] = 0.0
    noise_deg: Annotated[float, Field(ge=0, le=1)] = 0.003
    drift_x_deg_h: Annotated[float, Field(ge=-10, le=10)] = 0.0
    drift_y_deg_h: Annotated[float, Field(ge=-10, le=10)] = 0.0
    wind_ms: Annotated[float, Field(ge=0, le=90)] | None = None
    turbulence: Fraction = 0.2
    sway_deg_per_ms: Annotated[float, Field(ge=0, le=0.1)] = 0.0
    battery_v: Annotated[float, Field(gt=0, le=60)] | None = 3.6
    battery_drain_v_day: Annotated[float, Field(ge=0)] = 0.002

    @property
    def tick_s(self) -> float:
        """How often the model wakes."""
        return self.interval_s


class ElevatorSpec(_DeviceBase):
    """An elevator controller: shaft geometry, trip habits, service mode, vendor fault codes."""

    FIXED_FIELDS: ClassVar[frozenset[str]] = _IDENTITY_FIELDS | {
        "lowest_floor",
        "highest_floor",
        "floor_height_m",
        "start_floor",
    }
    ACTIONS: ClassVar[frozenset[str]] = _DeviceBase.ACTIONS | {"fault", "clear_fault"}

    kind: Literal["elevator"]
    lowest_floor: Annotated[int, Field(ge=-20, le=300)] = 1
    highest_floor: Annotated[int, Field(ge=-20, le=300)] = 12
    start_floor: int | None = None
    recall_floor: int | None = None
    floor_height_m: Annotated[float, Field(ge=2, le=10)] = 3.0
    rated_speed_ms: Annotated[float, Field(gt=0, le=12)] = 1.75
    dwell_s: Annotated[float, Field(ge=1, le=600)] = 8.0
    idle_s: Annotated[float, Field(ge=1, le=86_400)] = 20.0
    idle_probability: Fraction = 0.3
    mode: ElevatorMode = "normal"
    report_occupied: bool = True
    report_speed: bool = True
    fault_codes: dict[ElevatorFault, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _floors_make_sense(self) -> Self:
        if self.lowest_floor >= self.highest_floor:
            raise ValueError("lowest_floor must be below highest_floor")
        for name in ("start_floor", "recall_floor"):
            floor = getattr(self, name)
            if floor is not None and not self.lowest_floor <= floor <= self.highest_floor:
                raise ValueError(f"{name} {floor} is outside the shaft")
        return self

    @property
    def tick_s(self) -> float:
        """How often the model wakes."""
        return self.interval_s


class CameraSpec(_DeviceBase):
    """An AI camera: scripted detections plus optional low-confidence background noise."""

    ACTIONS: ClassVar[frozenset[str]] = _DeviceBase.ACTIONS | {"detect"}

    kind: Literal["camera"]
    snapshot_base_url: Annotated[str, Field(pattern=r"^https?://\S+$")] = (
        "https://snapshots.example.invalid"
    )
    background_events: tuple[CameraEvent, ...] = ()
    background_rate_h: Annotated[float, Field(ge=0, le=3600)] = 0.0
    background_confidence: tuple[Fraction, Fraction] = (0.2, 0.5)

    @model_validator(mode="after")
    def _confidence_range(self) -> Self:
        low, high = self.background_confidence
        if low > high:
            raise ValueError("background_confidence must be [low, high] with low <= high")
        return self

    @property
    def tick_s(self) -> float:
        """How often the model wakes (to roll for a background event)."""
        return self.interval_s


DeviceSpec = Annotated[
    RainGaugeSpec | TiltSpec | ElevatorSpec | CameraSpec, Field(discriminator="kind")
]
SpecT = TypeVar("SpecT", bound=_DeviceBase)

# Input-only names that stand for a stored field (see RainGaugeSpec._per_report).
_ALIASES = {"mm_per_report": "rate_mm_h"}


def with_params(spec: SpecT, params: Mapping[str, Any]) -> SpecT:
    """Return `spec` with the changeable parameters in `params` replaced (validated)."""
    fixed = sorted(set(params) & type(spec).FIXED_FIELDS)
    if fixed:
        raise ValueError(f"{', '.join(fixed)} cannot be changed by a set step")
    merged = spec.model_dump()
    for alias, field in _ALIASES.items():
        if alias in params:
            merged.pop(field, None)
    merged.update(params)
    return type(spec).model_validate(merged)
