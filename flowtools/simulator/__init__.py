"""Simulators that play Meta and the first-party sources: delivery traffic, Flow sessions, their exact truth."""
