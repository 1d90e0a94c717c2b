"""Registering a flow version's Flow JSON through the receiver: the one write path of flow definitions."""

from __future__ import annotations

import httpx

from config.settings import Settings
from ingest.paths import flow_registration_path


class RegistrationError(Exception):
    """A flow version could not be registered through the receiver; the message says why."""


def receiver_url(settings: Settings) -> str:
    """Where this machine reaches the receiver (a wildcard bind address is reached on loopback)."""
    host = settings.ingest_host
    host = "127.0.0.1" if host in {"0.0.0.0", "", "::"} else host  # noqa: S104 - compared, not bound
    return f"http://{host}:{settings.ingest_port}"


def register_flow_json(settings: Settings, *, flow_id: str, version: str, flow_json: bytes, name: str = "",
                       base_url: str | None = None, timeout_s: float = 15.0) -> list[str]:
    """PUT a version's Flow JSON to the receiver, as a business would; returns its screens in routing order.

    The receiver validates it and publishes it to the broker; the stream worker writes it to the warehouse.
    """
    url = (base_url or receiver_url(settings)) + flow_registration_path(flow_id, version)
    try:
        response = httpx.put(url, content=flow_json, timeout=timeout_s, params={"name": name} if name else None,
                             headers={"Authorization": f"Bearer {settings.events_token}"})
    except httpx.HTTPError as exc:
        raise RegistrationError(f"the receiver at {url} is not reachable ({exc}); is `flowscope up` "
                                "(or `flowscope ingest` with a stream worker) running?") from exc
    if response.status_code != 200:
        raise RegistrationError(f"the receiver refused flow {flow_id} version {version}: "
                                f"{response.status_code} {response.text.strip()}")
    screens: list[str] = response.json()["screens"]
    return screens
