"""The composition root: wires gateway, rules, cases, dispatch and API into one running service."""

from gridwatch.service.runtime import Service

__all__ = ["Service"]
