"""Data files for `gridwatch demo`: its sensors and rules."""
