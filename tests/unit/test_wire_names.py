"""The simulators may not import the codecs, so the wire names live in both: keep them equal."""

from typing import get_args

import pytest

from gridwatch.adapters import codecs
from gridwatch.domain import SensorKind
from gridwatch.domain.sensors import SENSOR_ID_PATTERN
from gridwatch.simulators import _names


@pytest.mark.parametrize(
    ("simulated", "decoded"),
    [
        (_names.ELEVATOR_FAULTS, codecs.ELEVATOR_FAULTS),
        (_names.ELEVATOR_MODES, codecs.ELEVATOR_MODES),
        (_names.CAMERA_EVENTS, codecs.CAMERA_EVENTS),
        (get_args(_names.DeviceKind), {kind.value for kind in SensorKind}),
    ],
)
def test_simulators_and_codecs_speak_the_same_names(simulated, decoded):
    assert set(simulated) == set(decoded)


def test_sensor_id_pattern_is_the_same():
    assert _names.SENSOR_ID_PATTERN == SENSOR_ID_PATTERN
