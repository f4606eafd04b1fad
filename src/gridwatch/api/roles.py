"""Roles and what each may do: the role matrix, as data."""

from enum import StrEnum


class Role(StrEnum):
    """The roles an API key can have."""

    INSTALLER = "installer"
    OFFICER = "officer"
    DISPATCHER = "dispatcher"
    VIEWER = "viewer"
    ADMIN = "admin"


class Permission(StrEnum):
    """One kind of access a route needs."""

    SENSORS_READ = "sensors:read"
    SENSORS_WRITE = "sensors:write"
    GRID_READ = "grid:read"
    GRID_WRITE = "grid:write"
    CASES_READ = "cases:read"
    TEST_CASES_READ = "cases:read-test"
    METRICS_READ = "metrics:read"
    RULES_READ = "rules:read"
    RULES_WRITE = "rules:write"


_EVERYONE = frozenset(Role)

ROLE_MATRIX: dict[Permission, frozenset[Role]] = {
    Permission.SENSORS_READ: _EVERYONE,
    Permission.SENSORS_WRITE: frozenset({Role.INSTALLER, Role.ADMIN}),
    Permission.GRID_READ: _EVERYONE,
    Permission.GRID_WRITE: frozenset({Role.INSTALLER, Role.ADMIN}),
    Permission.CASES_READ: _EVERYONE,
    # Cases raised by sensors still being commissioned are the installers' business only.
    Permission.TEST_CASES_READ: frozenset({Role.INSTALLER, Role.ADMIN}),
    Permission.METRICS_READ: _EVERYONE,
    Permission.RULES_READ: _EVERYONE,
    Permission.RULES_WRITE: frozenset({Role.ADMIN}),
}


def allows(role: Role, permission: Permission) -> bool:
    """Whether `role` has `permission`."""
    return role in ROLE_MATRIX[permission]
