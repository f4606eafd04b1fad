"""The case domain: cases opened from alarms, their history, and the transactional outbox."""
