"""The runtime kernel: settings, database, sensor registry, ingest pipeline, telemetry store."""
