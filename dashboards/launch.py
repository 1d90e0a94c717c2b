"""Starts Streamlit on the dashboards app (``flowscope dashboards``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from config.settings import Settings

APP = Path(__file__).with_name("app.py")


def streamlit_argv(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(settings.dashboard_port),
        "--server.address", settings.dashboard_host,
        "--server.headless", "true",
        "--server.runOnSave", "false",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "viewer",
        # Streamlit collects every generation after each run of a page by default: 100+ ms with the GIL held, on
        # the path of the next click (measured with py-spy: a fifth of the pages' script time). Python's own
        # collector still runs as allocations call for it.
        "--runner.postScriptGC", "false",
    ]


def run(settings: Settings) -> int:
    # Replace this process: signals (Ctrl-C, SIGTERM) reach Streamlit itself, nothing is left behind.
    argv = streamlit_argv(settings)
    os.execv(sys.executable, argv)  # noqa: S606
    return 0  # pragma: no cover
