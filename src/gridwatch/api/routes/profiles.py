"""Device profiles: register maps, vendor codecs and fault-code tables, as data."""

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from gridwatch.api.deps import ContextDep, permitted
from gridwatch.api.roles import Permission

router = APIRouter(prefix="/api/v1/device-profiles", tags=["sensors"])


class ProfileList(BaseModel):
    """Every device profile the gateway knows, by name."""

    items: list[dict[str, Any]]


@router.get("", **permitted(Permission.SENSORS_READ))
async def list_profiles(context: ContextDep) -> ProfileList:
    """The shipped profiles and those added in GRIDWATCH_PROFILES_DIR."""
    return ProfileList(
        items=[context.profiles[name].public_dict() for name in sorted(context.profiles)]
    )
