"""Real servers on loopback ports for the test suite: Mosquitto, PostgreSQL, a webhook receiver."""
