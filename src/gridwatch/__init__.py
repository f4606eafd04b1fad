"""gridwatch: IoT sensor gateway and monitoring service for grid-based city management."""
