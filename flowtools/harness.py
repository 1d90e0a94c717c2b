"""The one pipeline harness of the tests, ``flowscope chaos`` and ``flowscope bench``.

It builds settings for a pipeline of its own (fresh secrets, free loopback ports, its own data directory) and
starts its components as separate processes with the same specs as ``flowscope up``.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

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
    broker_port, warehouse_port = free_port(), free_port()
    env = {
        "FLOWSCOPE_APP_SECRET": secrets.token_hex(16),
        "FLOWSCOPE_VERIFY_TOKEN": secrets.token_hex(8),
        "FLOWSCOPE_HASH_KEY": secrets.token_hex(16),
        "FLOWSCOPE_DATA_DIR": str(data_dir),
        "FLOWSCOPE_BROKER_PORT": str(broker_port),
        "FLOWSCOPE_SEAWEEDFS_BASE_PORT": str(free_port_block(len(SEAWEEDFS_PORTS))),
        "FLOWSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker_port}",
        "FLOWSCOPE_WAREHOUSE_PORT": str(warehouse_port),
        "FLOWSCOPE_WAREHOUSE_URL": f"http://default:@127.0.0.1:{warehouse_port}/flowscope",
        "FLOWSCOPE_INGEST_PORT": str(free_port()),
        "FLOWSCOPE_STREAM_METRICS_PORT": str(free_port()),
        "FLOWSCOPE_DASHBOARD_PORT": str(free_port()),
        "FLOWSCOPE_PROMETHEUS_PORT": str(free_port()),
        "FLOWSCOPE_ALERTMANAGER_PORT": str(free_port()),
        "FLOWSCOPE_PARTITIONS": "4",
    }
    return Settings.from_env(env, **overrides)


