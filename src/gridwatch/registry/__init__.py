"""The sensor registry: sensors, grid hierarchy and device profiles, as installers keep them."""
