"""The HTTP API: reads and commands the domain; it is not on the ingest hot path."""

from gridwatch.api.app import create_app
from gridwatch.api.context import ApiContext

__all__ = ["ApiContext", "create_app"]
