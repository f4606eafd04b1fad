"""Device simulators that speak only the wire protocol: scenarios, live runs, record/replay.

Rain gauges, billboard tilt sensors, elevators and cameras publish the canonical MQTT payloads
of the public contract, driven by YAML scenarios, at 1x, 10x, 100x or full speed. The pure
`iter_messages` produces the same feed without a broker. `ModbusDeviceServer` serves the tilt,
rain gauge and elevator devices as real Modbus TCP (or RTU-over-TCP) servers on loopback, with
registers laid out as the gateway's device profiles say and faults switchable at run time.
Nothing here imports other gridwatch packages.

Scenario files (see `scenarios/` for the shipped ones)::

    name: my_storm            # optional, defaults to the file name
    start: 2025-07-01T08:00:00Z   # optional; pins `ts` (live runs default to now)
    duration_s: 3600          # optional; absent = run until stopped
    repeat_every_s: 7200      # optional; the timeline recurs with this period
    devices:                  # id, kind, interval_s, phase_s, then kind parameters:
      - {id: RG-1, kind: rain_gauge, interval_s: 300, rate_mm_h: 6}
        # rain_gauge: mode (increment|total), tip_mm, rate_mm_h or mm_per_report, jitter,
        #   precip, initial_total_mm, extra_report_mm + sample_s (hydrology extra reports)
        # tilt: baseline_x_deg, baseline_y_deg, noise_deg, drift_x_deg_h, drift_y_deg_h,
        #   wind_ms, turbulence, sway_deg_per_ms, battery_v, battery_drain_v_day
        # elevator: lowest_floor, highest_floor, start_floor, recall_floor, floor_height_m,
        #   rated_speed_ms, dwell_s, idle_s, idle_probability, mode, fault_codes, report_*
        # camera: background_events, background_rate_h, background_confidence,
        #   snapshot_base_url
    timeline:                 # steps at scenario offsets; same-time steps in file order
      - {at_s: 20, device: RG-1, action: set, params: {mm_per_report: 4}}
        # set (any kind), fault / clear_fault (elevator), detect (camera),
        # reset_counter (rain gauge power loss), offline (abrupt: the broker sends the will),
        # online (reconnect)
"""

from gridwatch.simulators._errors import (
    BrokerError,
    RecordingError,
    ScenarioError,
    SimulatorError,
)
from gridwatch.simulators._feed import (
    DEFAULT_START,
    FeedItem,
    SimMessage,
    StatusChange,
    format_ts,
    iter_feed,
    iter_messages,
)
from gridwatch.simulators._loader import load_scenario, parse_scenario, shipped_scenarios
from gridwatch.simulators._modbus import ModbusDevice, ModbusDeviceServer, ModbusFraming
from gridwatch.simulators._modbus_endpoint import Fault, FaultSetting, ModbusServeError
from gridwatch.simulators._mqtt import BrokerAddress, parse_mqtt_url
from gridwatch.simulators._recorder import RecordedMessage, load_recording, record, replay
from gridwatch.simulators._runner import RunStats, run_scenario
from gridwatch.simulators._scenario import (
    ClearFaultStep,
    DetectStep,
    FaultStep,
    OfflineStep,
    OnlineStep,
    ResetCounterStep,
    Scenario,
    SetStep,
    Step,
)
from gridwatch.simulators._specs import (
    CameraSpec,
    DeviceSpec,
    ElevatorSpec,
    RainGaugeSpec,
    TiltSpec,
)

__all__ = [
    "DEFAULT_START",
    "BrokerAddress",
    "BrokerError",
    "CameraSpec",
    "ClearFaultStep",
    "DetectStep",
    "DeviceSpec",
    "ElevatorSpec",
    "Fault",
    "FaultSetting",
    "FaultStep",
    "FeedItem",
    "ModbusDevice",
    "ModbusDeviceServer",
    "ModbusFraming",
    "ModbusServeError",
    "OfflineStep",
    "OnlineStep",
    "RainGaugeSpec",
    "RecordedMessage",
    "RecordingError",
    "ResetCounterStep",
    "RunStats",
    "Scenario",
    "ScenarioError",
    "SetStep",
    "SimMessage",
    "SimulatorError",
    "StatusChange",
    "Step",
    "TiltSpec",
    "format_ts",
    "iter_feed",
    "iter_messages",
    "load_recording",
    "load_scenario",
    "parse_mqtt_url",
    "parse_scenario",
    "record",
    "replay",
    "run_scenario",
    "shipped_scenarios",
]
