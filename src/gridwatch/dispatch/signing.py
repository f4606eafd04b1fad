"""Standard Webhooks headers for a delivery."""

from datetime import datetime

from standardwebhooks.webhooks import Webhook


def signed_headers(
    *, secrets: list[str], event_id: str, body: bytes, at: datetime
) -> dict[str, str]:
    """Headers per the Standard Webhooks spec, one v1 signature per secret (key rotation)."""
    signatures = [Webhook(secret).sign(event_id, at, body.decode("utf-8")) for secret in secrets]
    return {
        "content-type": "application/cloudevents+json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
