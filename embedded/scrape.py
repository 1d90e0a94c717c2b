"""Reads figures from our processes' Prometheus /metrics endpoints (status lines, benchmarks)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def metric_sum(url: str, name: str, *, timeout_s: float = 5.0) -> float | None:
    """The sum of every sample named ``name`` at ``url``; None when the endpoint does not answer or has none."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 - our own loopback endpoints
            text = answer.read().decode()
    except OSError:
        return None
    values = [sample.value for family in text_string_to_metric_families(text) for sample in family.samples
              if sample.name == name]
    return sum(values) if values else None
