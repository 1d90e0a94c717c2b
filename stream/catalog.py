"""Registered flow definitions, as the stream needs them: entry screen and screen ids per version.

Node events are checked against their flow version: a screen the version does not have is rejected
with a reason; an endpoint INIT (no screen) becomes a view of the version's entry screen. Versions
nobody registered are accepted as they come (there is nothing to check them against). The catalog
reloads from the warehouse when an unknown version shows up, at most every ``refresh_s`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import orjson

from contract.events import SOURCE_FIRST_PARTY, NodeEvent, RejectedEvent, event_id
from contract.flowjson import FlowDefinition
from warehouse.exceptions import WarehouseError

logger = logging.getLogger(__name__)

FlowKey = tuple[str, str]  # (flow_id, flow_version)


@dataclass(frozen=True)
class CatalogEntry:
    entry: str
    screens: frozenset[str]


class FlowCatalog:
    def __init__(self, load: Callable[[], dict[FlowKey, CatalogEntry]], *, refresh_s: float = 10.0) -> None:
        self._load = load
        self._refresh_s = refresh_s
        self._entries: dict[FlowKey, CatalogEntry] = {}
        self._loaded_at = float("-inf")

    def learn(self, definition: FlowDefinition) -> None:
        """Check node events against ``definition`` from now on (parsed once, when its batch was read)."""
        self._entries[(definition.flow_id, definition.version)] = CatalogEntry(definition.entry, definition.screen_ids)

    async def refresh_for(self, keys: set[FlowKey]) -> None:
        """Reload when some of ``keys`` are unknown and the last load is old enough."""
        if keys <= self._entries.keys() or time.monotonic() - self._loaded_at < self._refresh_s:
            return
        try:
            loaded = await asyncio.to_thread(self._load)
        except WarehouseError as exc:  # the warehouse may be down: check against what we know
            logger.warning("could not load flow definitions: %r", exc)
            return
        self._loaded_at = time.monotonic()
        self._entries.update(loaded)

    def resolve(self, event: NodeEvent) -> NodeEvent | RejectedEvent:
        known = self._entries.get((event.flow_id, event.flow_version))
        if known is None:
            return event
        if not event.screen:
            return msgspec.structs.replace(event, screen=known.entry)
        if event.screen in known.screens:
            return event
        reason = f"screen {event.screen!r} is not in flow {event.flow_id} version {event.flow_version}"
        raw = orjson.dumps(msgspec.to_builtins(event), option=orjson.OPT_SORT_KEYS).decode()
        return RejectedEvent(
            event_id=event_id("rejected", SOURCE_FIRST_PARTY, reason, event.event_id),
            source=SOURCE_FIRST_PARTY,
            reason=reason,
            raw=raw,
            received_at_ms=event.received_at_ms,
        )
