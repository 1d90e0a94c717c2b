"""The event contract every stage shares: events, their Kafka codec, Flow JSON, limits, pseudonymisation."""
