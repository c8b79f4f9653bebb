"""Compressed request bodies: decoded before parsing, bounded after decoding."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest
import zstandard

from codexpool_router.inbound import decode_content
from codexpool_shared.errors import ApiError

BODY = b'{"model": "gpt-5-codex", "input": "' + b"x" * 500 + b'"}'


def _zstd_streamed(data: bytes) -> bytes:
    # A frame without its content size in the header, as a streaming compressor writes it.
    compressor = zstandard.ZstdCompressor().compressobj()
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        (None, BODY),
        ("identity", BODY),
        ("zstd", zstandard.ZstdCompressor(level=3).compress(BODY)),
        ("zstd", _zstd_streamed(BODY)),
        ("gzip", gzip.compress(BODY)),
        ("GZip ", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),
    ],
    # Explicit ids: xdist workers must collect the same names, and gzip bytes carry a time.
    ids=["none", "identity", "zstd", "zstd-streamed", "gzip", "gzip-mixed-case", "deflate"],
)
def test_each_coding_decodes_to_the_json(encoding: str | None, encoded: bytes) -> None:
    assert decode_content(encoded, encoding, 10_000) == BODY


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_a_small_bomb_is_refused_by_its_decoded_size(encoding: str) -> None:
    huge = b"{" + b" " * 5_000_000 + b"}"
    bomb = _zstd_streamed(huge) if encoding == "zstd" else gzip.compress(huge)
    assert len(bomb) < 10_000
    with pytest.raises(ApiError) as refused:
        decode_content(bomb, encoding, 100_000)
    assert (refused.value.status_code, refused.value.code) == (413, "request_too_large")


def test_garbage_and_unknown_codings_are_clear_errors() -> None:
    with pytest.raises(ApiError) as garbage:
        decode_content(os.urandom(64), "zstd", 10_000)
    assert (garbage.value.status_code, garbage.value.code) == (400, "invalid_content_encoding")
    with pytest.raises(ApiError) as unknown:
        decode_content(BODY, "br", 10_000)
    assert (unknown.value.status_code, unknown.value.code) == (415, "unsupported_content_encoding")
    # A refusal of the client's request, typed as one (not as a fault of the server).
    assert unknown.value.type == "invalid_request_error"
