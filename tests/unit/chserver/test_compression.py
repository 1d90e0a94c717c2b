"""Body compression: request bodies per Content-Encoding, ClickHouse's compressed blocks, responses."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from collections.abc import Callable

import lz4.block
import lz4.frame
import pytest
import zstandard

from chserver.compression import choose_response_encoding, decode_body, decompress_native_blocks, encode_body
from chserver.exceptions import EngineError

BODY = b"INSERT data \x00\x01\xff " * 1000


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("lz4", lz4.frame.compress), ("zstd", zstandard.ZstdCompressor().compress), ("gzip", gzip.compress),
        ("deflate", zlib.compress), ("xz", lzma.compress), ("bz2", bz2.compress), ("", lambda b: b),
        ("identity", lambda b: b), ("none", lambda b: b), ("GZIP", gzip.compress), ("zst", zstandard.compress),
    ],
)
def test_request_bodies_are_decompressed_per_content_encoding(encoding: str,
                                                              compress: Callable[[bytes], bytes]) -> None:
    assert decode_body(compress(BODY), encoding) == BODY


@pytest.mark.parametrize("compress", [lz4.frame.compress, zstandard.ZstdCompressor().compress])
def test_bodies_of_several_frames_decompress_whole(compress: Callable[[bytes], bytes]) -> None:
    # clickhouse-connect compresses each Native block of an insert as a frame of its own.
    blocks = [b"block one " * 100, b"block two " * 300, b"3"]
    encoding = "lz4" if compress is lz4.frame.compress else "zstd"
    assert decode_body(b"".join(compress(block) for block in blocks), encoding) == b"".join(blocks)


def test_raw_deflate_bodies_are_accepted_too() -> None:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decode_body(raw.compress(BODY) + raw.flush(), "deflate") == BODY


def test_garbled_truncated_or_unknown_encodings_are_clickhouse_errors() -> None:
    with pytest.raises(EngineError) as garbled:
        decode_body(b"not lz4", "lz4")
    assert (garbled.value.code, garbled.value.name) == (271, "CANNOT_DECOMPRESS")
    with pytest.raises(EngineError, match="Unexpected end of the zstd request body"):
        decode_body(zstandard.ZstdCompressor().compress(BODY)[:-10], "zstd")
    with pytest.raises(EngineError) as unknown:
        decode_body(b"x", "snappy")
    assert (unknown.value.code, unknown.value.name) == (48, "NOT_IMPLEMENTED")
    assert "Unknown compression method 'snappy'" in unknown.value.message


def _native_block(method: int, payload: bytes, raw_size: int) -> bytes:
    return struct.pack("<16sBII", b"\x00" * 16, method, len(payload) + 9, raw_size) + payload


def test_clickhouse_native_compressed_bodies_decompress() -> None:
    first, second, third = b"lz4 block " * 50, b"zstd block " * 20, b"plain"
    body = (_native_block(0x82, lz4.block.compress(first, store_size=False), len(first))
            + _native_block(0x90, zstandard.ZstdCompressor().compress(second), len(second))
            + _native_block(0x02, third, len(third)))
    assert decompress_native_blocks(body) == first + second + third
    with pytest.raises(EngineError) as unknown:
        decompress_native_blocks(_native_block(0x42, b"x", 1))
    assert (unknown.value.code, unknown.value.message) == (432, "Unknown codec family code: 66")
    with pytest.raises(EngineError, match="Truncated compressed block"):
        decompress_native_blocks(_native_block(0x02, third, len(third))[:-1])


def test_response_encoding_follows_clickhouse_preference_not_header_order() -> None:
    assert choose_response_encoding("lz4,zstd,gzip,deflate") == "zstd"  # what clickhouse-connect sends
    assert choose_response_encoding("gzip, deflate, br") == "gzip"  # what curl --compressed sends
    assert choose_response_encoding("lz4") == "lz4"
    assert choose_response_encoding("deflate;q=0.5, identity") == "deflate"
    assert choose_response_encoding("br") is None
    assert choose_response_encoding(None) is None


@pytest.mark.parametrize("encoding", ["zstd", "lz4", "gzip", "deflate", "xz", "bz2"])
def test_responses_compress_as_the_content_encoding_says(encoding: str) -> None:
    body = b"1\t2\n" * 5000
    compressed = encode_body(body, encoding)
    assert len(compressed) < len(body)
    assert decode_body(compressed, encoding) == body


def test_lz4_responses_are_lz4_frames_as_clickhouse_connect_decodes_them() -> None:
    body = b"abc" * 1000
    decompressor = lz4.frame.LZ4FrameDecompressor()
    assert (decompressor.decompress(encode_body(body, "lz4")), decompressor.eof) == (body, True)
