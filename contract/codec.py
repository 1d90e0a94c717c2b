"""How events travel on Kafka: one record carries a JSON array of events that share a partition.

Producers batch many events per record (placed with :func:`partition_for`); consumers decode a record at once.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import msgspec

from contract.events import AnyEvent
from contract.exceptions import ContractError

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)
_batch_decoder = msgspec.json.Decoder(list[AnyEvent])


def encode(event: AnyEvent) -> bytes:
    return _encoder.encode(event)


def decode(raw: bytes) -> AnyEvent:
    try:
        event: AnyEvent = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ContractError(f"undecodable event: {exc}") from exc
    return event


def encode_batch(events: Sequence[AnyEvent]) -> bytes:
    """One Kafka record's value: a JSON array of events."""
    return _encoder.encode(events)


def decode_batch(raw: bytes) -> list[AnyEvent]:
    try:
        events: list[AnyEvent] = _batch_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ContractError(f"undecodable event batch: {exc}") from exc
    return events


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of an event key: every producer of the pipeline places events with this."""
    return zlib.crc32(key) % partitions
