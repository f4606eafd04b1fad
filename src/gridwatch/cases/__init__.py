"""The case domain: cases from alarms and reports, the loop they go through, and the outbox."""
