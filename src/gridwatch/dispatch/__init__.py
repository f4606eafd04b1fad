"""Delivery of case events: webhook subscriptions, the outbox relay and signing."""
