"""Fixed wire identifiers of the canonical MQTT contract (DESIGN.md, "Public contracts")."""

from typing import Final, Literal, get_args

SENSOR_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

DeviceKind = Literal["rain_gauge", "tilt", "elevator", "camera"]
TopicSuffix = Literal["telemetry", "event", "status"]

ElevatorFault = Literal[
    "safety_circuit_open",
    "door_close_fault",
    "door_open_fault",
    "stopped_outside_door_zone",
    "unintended_movement",
    "motor_runtime_limiter",
    "floor_position_lost",
    "cannot_restart",
    "top_overrun",
    "bottom_overrun",
    "entrapment",
    "overspeed",
    "door_open_while_moving",
    "alarm_button",
    "power_loss",
]
ElevatorMode = Literal[
    "normal",
    "inspection",
    "fire_return",
    "firefighter",
    "emergency_power",
    "earthquake",
    "stopped",
    "unknown",
]
CameraEvent = Literal[
    "exposed_garbage",
    "overflowing_bin",
    "piled_materials",
    "out_of_store_trading",
    "mobile_vendor",
    "illegal_parking_motor",
    "illegal_parking_nonmotor",
    "crowd_gathering",
    "waterlogging",
    "smoke_fire",
    "missing_manhole_cover",
    "illegal_advertising",
    "fire_lane_blocked",
]

ELEVATOR_FAULTS: Final[tuple[str, ...]] = get_args(ElevatorFault)
ELEVATOR_MODES: Final[tuple[str, ...]] = get_args(ElevatorMode)
CAMERA_EVENTS: Final[tuple[str, ...]] = get_args(CameraEvent)

# The simulated controller's vendor code table. Vendors number faults differently, so this is
# one made-up model's table; a scenario can override any entry per device.
DEFAULT_FAULT_CODES: Final[dict[str, str]] = {
    fault: f"E{index:02d}" for index, fault in enumerate(ELEVATOR_FAULTS, start=1)
}
