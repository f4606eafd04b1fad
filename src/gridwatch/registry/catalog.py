"""The device profiles in force: the shipped ones plus a deployment's own folder."""

from pathlib import Path

from gridwatch.adapters.codecs import canonical_fields
from gridwatch.registry.profiles import SHIPPED_PROFILES_DIR, DeviceProfile, load_profiles


class ProfileConflictError(ValueError):
    """A deployment profile reuses a shipped profile's name."""


def device_profiles(extra_dir: Path | None = None) -> dict[str, DeviceProfile]:
    """Shipped profiles and those in `extra_dir`, each checked against the canonical fields."""
    canonical = canonical_fields()
    profiles = load_profiles(SHIPPED_PROFILES_DIR, canonical=canonical)
    if extra_dir is not None:
        extra = load_profiles(extra_dir, canonical=canonical)
        clash = sorted(set(extra) & set(profiles))
        if clash:
            raise ProfileConflictError(
                f"{extra_dir}: profiles {clash} have the names of shipped profiles; rename them"
            )
        profiles |= extra
    return profiles


def profile_kinds(profiles: dict[str, DeviceProfile]) -> dict[str, str]:
    """Profile name → the sensor kind it is for."""
    return {name: str(profile.kind) for name, profile in profiles.items()}
