"""Roles and what each may do: the role matrix, as data."""

from enum import StrEnum

from gridwatch.cases.lifecycle import Action


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
    CASES_REPORT = "cases:report"
    # The transitions route needs this; each action then needs its own permission below.
    CASES_TRANSITION = "cases:transition"
    CASES_DISPATCH = "cases:dispatch"
    CASES_ACCEPT = "cases:accept"
    CASES_FEEDBACK = "cases:feedback"
    CASES_VERIFY = "cases:verify"
    CASES_REJECT = "cases:reject"
    CASES_CLOSE = "cases:close"
    CASES_CANCEL = "cases:cancel"
    CASES_POSTPONE = "cases:postpone"
    CASES_APPROVE_POSTPONE = "cases:approve_postpone"
    CASES_EVALUATE = "cases:evaluate"
    CASES_REOPEN = "cases:reopen"
    # The dispatch system's receipts (accepted, arrived, handled) on a case.
    CASES_RECEIPT = "cases:receipt"
    # Pulling case events from the dispatch queue.
    DISPATCH_READ = "dispatch:read"
    KPI_READ = "kpi:read"
    METRICS_READ = "metrics:read"
    RULES_READ = "rules:read"
    RULES_WRITE = "rules:write"
    ROUTING_WRITE = "routing:write"
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"


_EVERYONE = frozenset(Role)
# The duty officer commands the loop; the dispatch system (or a unit's operator) works cases.
_OFFICERS = frozenset({Role.OFFICER, Role.ADMIN})
_DISPATCHERS = frozenset({Role.DISPATCHER, Role.ADMIN})

ROLE_MATRIX: dict[Permission, frozenset[Role]] = {
    Permission.SENSORS_READ: _EVERYONE,
    Permission.SENSORS_WRITE: frozenset({Role.INSTALLER, Role.ADMIN}),
    Permission.GRID_READ: _EVERYONE,
    Permission.GRID_WRITE: frozenset({Role.INSTALLER, Role.ADMIN}),
    Permission.CASES_READ: _EVERYONE,
    # Cases raised by sensors still being commissioned are the installers' business only.
    Permission.TEST_CASES_READ: frozenset({Role.INSTALLER, Role.ADMIN}),
    Permission.CASES_REPORT: _OFFICERS,
    Permission.CASES_TRANSITION: _OFFICERS | _DISPATCHERS,
    Permission.CASES_DISPATCH: _OFFICERS,
    Permission.CASES_ACCEPT: _DISPATCHERS,
    Permission.CASES_FEEDBACK: _DISPATCHERS,
    Permission.CASES_VERIFY: _OFFICERS,
    Permission.CASES_REJECT: _OFFICERS,
    Permission.CASES_CLOSE: _OFFICERS,
    Permission.CASES_CANCEL: _OFFICERS,
    Permission.CASES_POSTPONE: _DISPATCHERS,
    Permission.CASES_APPROVE_POSTPONE: _OFFICERS,
    Permission.CASES_EVALUATE: _OFFICERS,
    Permission.CASES_REOPEN: _OFFICERS,
    Permission.CASES_RECEIPT: _DISPATCHERS,
    # The queue carries every case, test cases included: the dispatch system's feed.
    Permission.DISPATCH_READ: _DISPATCHERS,
    # Evaluation is about the loop's work, which installers take no part in.
    Permission.KPI_READ: _EVERYONE - {Role.INSTALLER},
    Permission.METRICS_READ: _EVERYONE,
    Permission.RULES_READ: _EVERYONE,
    Permission.RULES_WRITE: frozenset({Role.ADMIN}),
    # The routing table decides which unit every case goes to: configuration, not casework.
    Permission.ROUTING_WRITE: frozenset({Role.ADMIN}),
    # The dispatch system may see what it is sent; subscribing makes gridwatch POST to any URL
    # it is given, so only admins do that.
    Permission.WEBHOOKS_READ: _DISPATCHERS,
    Permission.WEBHOOKS_WRITE: frozenset({Role.ADMIN}),
}


def allows(role: Role, permission: Permission) -> bool:
    """Whether `role` has `permission`."""
    return role in ROLE_MATRIX[permission]


def action_permission(action: Action) -> Permission:
    """The permission taking `action` on a case needs."""
    return Permission(f"cases:{action.value}")
