"""The one pipeline harness of the tests, ``flowscope chaos`` and ``flowscope bench``.

It builds settings for a pipeline of its own (fresh secrets, free loopback ports, its own data directory) and
starts its components as separate processes with the same specs as ``flowscope up``.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from config.settings import Settings
from embedded.specs import SEAWEEDFS_PORTS
from embedded.supervisor import (
    free_port,
    free_port_block,
)

logger = logging.getLogger(__name__)


def isolated_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a pipeline of its own: fresh secrets, every port free on loopback, data in ``data_dir``.

    The tests and ``flowscope chaos`` run such pipelines side by side with ``flowscope up``.
    """
    values: dict[str, Any] = {
        "app_secret": secrets.token_hex(16),
        "verify_token": secrets.token_hex(8),
        "hash_key": secrets.token_hex(16),
        "data_dir": Path(data_dir),
        "seaweedfs_base_port": free_port_block(len(SEAWEEDFS_PORTS)),
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "warehouse_url": f"http://default:@127.0.0.1:{free_port()}/flowscope",
        "ingest_port": free_port(),
        "stream_metrics_port": free_port(),
        "dashboard_port": free_port(),
        "prometheus_port": free_port(),
        "alertmanager_port": free_port(),
        "partitions": 4,
    }
    return Settings.build(**{**values, **overrides})
