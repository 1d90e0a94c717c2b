"""Configuration every process reads once at start: settings and Kafka topics."""
