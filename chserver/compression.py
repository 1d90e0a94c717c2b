"""HTTP body compression: request bodies per Content-Encoding, ClickHouse's compressed blocks, compressed responses."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib

import lz4.block
import lz4.frame
import zstandard

from chserver.exceptions import EngineError
from chserver.protocol import CANNOT_DECOMPRESS, NOT_IMPLEMENTED, UNKNOWN_CODEC

DEFAULT_ZLIB_LEVEL = 3

_DECOMPRESSION_NAMES = {
    "": "", "none": "", "auto": "", "identity": "",
    "gzip": "gzip", "gz": "gzip", "x-gzip": "gzip", "deflate": "deflate", "zstd": "zstd", "zst": "zstd",
    "lz4": "lz4", "xz": "xz", "lzma": "xz", "bz2": "bz2",
}


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    """A request body decompressed per its Content-Encoding (concatenated lz4/zstd frames included)."""
    name = (content_encoding or "").strip().lower()
    method = _DECOMPRESSION_NAMES.get(name)
    if method is None:
        raise EngineError(
            NOT_IMPLEMENTED,
            f"Unknown compression method '{content_encoding}'. Only 'auto', 'none', 'gzip', 'deflate', 'br', "
            "'xz', 'zstd', 'lz4', 'bz2', 'snappy' are supported as compression methods",
            "NOT_IMPLEMENTED",
        )
    if not method or not body:
        return body
    try:
        if method == "lz4":
            return _lz4_frames(body)
        if method == "zstd":
            return _zstd_frames(body)
        if method == "gzip":
            return gzip.decompress(body)
        if method == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some clients send it
        if method == "xz":
            return lzma.decompress(body)
        return bz2.decompress(body)
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(CANNOT_DECOMPRESS, f"Cannot decompress the {name} request body: {exc}",
                          "CANNOT_DECOMPRESS") from exc


def _lz4_frames(data: bytes) -> bytes:
    parts: list[bytes] = []
    rest = data
    while rest:
        decompressor = lz4.frame.LZ4FrameDecompressor()
        parts.append(decompressor.decompress(rest))
        if not decompressor.eof:
            raise EngineError(CANNOT_DECOMPRESS, "Unexpected end of the lz4 request body", "CANNOT_DECOMPRESS")
        rest = decompressor.unused_data
    return b"".join(parts)


def _zstd_frames(data: bytes) -> bytes:
    parts: list[bytes] = []
    rest = data
    while rest:
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        parts.append(decompressor.decompress(rest))
        if not decompressor.eof:
            raise EngineError(CANNOT_DECOMPRESS, "Unexpected end of the zstd request body", "CANNOT_DECOMPRESS")
        rest = decompressor.unused_data
    return b"".join(parts)


_NATIVE_BLOCK_HEADER = struct.Struct("<16sBII")  # checksum, method, compressed size (incl. 9 bytes), raw size


def decompress_native_blocks(body: bytes) -> bytes:
    """A body in ClickHouse's own compressed format (``decompress=1``). Checksums are not verified."""
    view = memoryview(body)
    parts: list[bytes] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < _NATIVE_BLOCK_HEADER.size:
            raise EngineError(CANNOT_DECOMPRESS, "Truncated compressed block header", "CANNOT_DECOMPRESS")
        _checksum, method, compressed_size, raw_size = _NATIVE_BLOCK_HEADER.unpack_from(view, offset)
        start = offset + _NATIVE_BLOCK_HEADER.size
        end = offset + 16 + compressed_size
        if compressed_size < 9 or end > len(view):
            raise EngineError(CANNOT_DECOMPRESS, "Truncated compressed block", "CANNOT_DECOMPRESS")
        payload = bytes(view[start:end])
        try:
            if method == 0x02:
                parts.append(payload)
            elif method == 0x82:
                parts.append(lz4.block.decompress(payload, uncompressed_size=raw_size))
            elif method == 0x90:
                parts.append(zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw_size))
            else:
                raise EngineError(UNKNOWN_CODEC, f"Unknown codec family code: {method}", "UNKNOWN_CODEC")
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(CANNOT_DECOMPRESS, f"Cannot decompress block: {exc}", "CANNOT_DECOMPRESS") from exc
        offset = end
    return b"".join(parts)


# ClickHouse's preference when the client accepts several (chooseHTTPCompressionMethod); no brotli/snappy here.
_RESPONSE_ENCODINGS = ("zstd", "lz4", "gzip", "deflate", "xz", "bz2")


def choose_response_encoding(accept_encoding: str | None) -> str | None:
    """The encoding ClickHouse would pick from an Accept-Encoding header (``None``: send as is)."""
    offered = {part.split(";")[0].strip().lower() for part in (accept_encoding or "").split(",")}
    for name in _RESPONSE_ENCODINGS:
        if name in offered:
            return name
    return None


def encode_body(body: bytes, encoding: str, level: int = DEFAULT_ZLIB_LEVEL) -> bytes:
    """Compress a response body as ``Content-Encoding: <encoding>`` (lz4 is an lz4 frame)."""
    if encoding == "zstd":
        return zstandard.ZstdCompressor(level=min(max(level, 1), 22)).compress(body)
    if encoding == "lz4":
        return bytes(lz4.frame.compress(body))
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=min(max(level, 1), 9), mtime=0)
    if encoding == "deflate":
        return zlib.compress(body, min(max(level, 1), 9))
    if encoding == "xz":
        return lzma.compress(body)
    if encoding == "bz2":
        return bz2.compress(body)
    raise ValueError(f"unsupported response encoding {encoding!r}")
