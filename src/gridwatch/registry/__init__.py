"""The sensor registry: sensors, the grid hierarchy and device profiles, as installers manage them."""
