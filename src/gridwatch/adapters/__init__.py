"""Edge protocols: payload codecs (pure) and the MQTT source."""
