"""The receiver: verifies and normalises Meta's webhooks and writes canonical events to Kafka."""
