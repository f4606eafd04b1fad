"""The `gridwatch` command."""

from gridwatch.cli.app import app, main

__all__ = ["app", "main"]
