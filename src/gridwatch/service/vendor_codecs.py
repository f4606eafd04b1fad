"""Vendor MQTT codecs from device profiles, in the shape the ingest pipeline calls."""

from collections.abc import Mapping
from typing import Any

from gridwatch.adapters.codecs import PayloadError
from gridwatch.gateway.pipeline import VendorCodec
from gridwatch.registry.profiles import DeviceProfile, MappingError, apply_mqtt_mapping


def vendor_codecs(profiles: Mapping[str, DeviceProfile]) -> dict[str, VendorCodec]:
    """One codec per MQTT profile; mapping errors become payload errors naming the field."""
    return {
        name: _codec(profile)
        for name, profile in profiles.items()
        if profile.protocol == "mqtt" and profile.mqtt_mapping is not None
    }


def _codec(profile: DeviceProfile) -> VendorCodec:
    def apply(payload: dict[str, Any]) -> dict[str, Any]:
        try:
            return apply_mqtt_mapping(profile, payload)
        except MappingError as err:
            raise PayloadError(err.field, err.reason) from err

    return apply
