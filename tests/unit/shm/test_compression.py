"""Batch compression codecs: what Kafka's Java client writes, and all it may read.

The third-party codec packages used as references here (gzip from the standard
library, python-snappy, lz4, zstandard) are test-only; shm.compression needs
only cramjam.
"""

from __future__ import annotations

import gzip
import os
import struct

import cramjam
import lz4.frame
import pytest
import snappy
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from shm.compression import (
    LZ4_BLOCK_SIZE,
    LZ4_FRAME_HEADER,
    XERIAL_BLOCK_SIZE,
    XERIAL_HEADER,
    codec_of,
    compress,
    decompress,
)
from shm.errors import CorruptRecordError
from shm.record_batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NAMES,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
)

CODECS = sorted(COMPRESSION_NAMES)
COMPRESSED = [c for c in CODECS if c != COMPRESSION_NONE]

# Sizes around the block boundaries of xerial snappy (32 KiB) and lz4 (64 KiB).
EDGE_SIZES = [0, 1, XERIAL_BLOCK_SIZE - 1, XERIAL_BLOCK_SIZE, XERIAL_BLOCK_SIZE + 1,
              LZ4_BLOCK_SIZE, LZ4_BLOCK_SIZE + 1, 3 * LZ4_BLOCK_SIZE + 7]


def half_random(size: int) -> bytes:
    """Data that compresses in parts: random bytes, then a run of one byte."""
    return os.urandom(size // 2) + b"r" * (size - size // 2)


@pytest.mark.parametrize("codec", CODECS, ids=COMPRESSION_NAMES.get)
@given(data=st.binary(max_size=4096))
@settings(deadline=None)
def test_every_codec_round_trips_arbitrary_bytes(codec: int, data: bytes) -> None:
    assert decompress(codec, compress(codec, data)) == data


@pytest.mark.parametrize("codec", CODECS, ids=COMPRESSION_NAMES.get)
@pytest.mark.parametrize("size", EDGE_SIZES)
def test_every_codec_round_trips_across_block_boundaries(codec: int, size: int) -> None:
    data = half_random(size)
    assert decompress(codec, compress(codec, data)) == data


@pytest.mark.parametrize("codec", CODECS, ids=COMPRESSION_NAMES.get)
def test_buffers_of_every_kind_are_accepted(codec: int) -> None:
    data = half_random(10_000)
    packed = compress(codec, memoryview(bytearray(data)))
    assert isinstance(packed, bytes)
    assert decompress(codec, bytearray(packed)) == data
    assert decompress(codec, memoryview(packed)) == data


def test_codec_names_resolve_to_kafka_numbers() -> None:
    assert [codec_of(n) for n in ("none", "gzip", "snappy", "lz4", "zstd")] == [0, 1, 2, 3, 4]
    assert codec_of("LZ4") == COMPRESSION_LZ4
    assert codec_of(COMPRESSION_ZSTD) == COMPRESSION_ZSTD
    for bad in ("brotli", 5, -1):
        with pytest.raises(ValueError, match="unknown compression"):
            codec_of(bad)


def test_compressing_with_an_unknown_codec_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        compress(5, b"data")


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_decompressing_an_unknown_codec_is_corrupt_data(codec: int) -> None:
    with pytest.raises(CorruptRecordError, match="unknown"):
        decompress(codec, b"data")


# --- gzip --------------------------------------------------------------------


def test_gzip_writes_a_standard_gzip_stream() -> None:
    data = half_random(50_000)
    assert gzip.decompress(compress(COMPRESSION_GZIP, data)) == data


def test_gzip_reads_concatenated_members_as_javas_gzip_input_stream_does() -> None:
    assert decompress(COMPRESSION_GZIP, gzip.compress(b"one ") + gzip.compress(b"two")) == (
        b"one two"
    )


# --- snappy ------------------------------------------------------------------


def xerial_blocks(stream: bytes) -> list[bytes]:
    """Split a xerial stream into its raw snappy blocks, checking the framing."""
    assert stream[:16] == XERIAL_HEADER
    blocks, pos = [], 16
    while pos < len(stream):
        (size,) = struct.unpack_from(">i", stream, pos)
        blocks.append(stream[pos + 4 : pos + 4 + size])
        pos += 4 + size
    assert pos == len(stream)
    return blocks


def test_snappy_writes_the_xerial_header_kafka_java_writes() -> None:
    # -126 'SNAPPY' 0, then big-endian int32 version 1 and compatible version 1.
    assert compress(COMPRESSION_SNAPPY, b"x")[:16] == bytes(
        [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    )


def test_snappy_blocks_hold_at_most_32_kib_of_input() -> None:
    data = half_random(3 * XERIAL_BLOCK_SIZE + 5)
    blocks = xerial_blocks(compress(COMPRESSION_SNAPPY, data))
    sizes = [len(snappy.decompress(block)) for block in blocks]
    assert sizes == [XERIAL_BLOCK_SIZE] * 3 + [5]
    assert b"".join(snappy.decompress(block) for block in blocks) == data


def test_snappy_of_nothing_is_a_bare_header() -> None:
    assert compress(COMPRESSION_SNAPPY, b"") == XERIAL_HEADER
    assert decompress(COMPRESSION_SNAPPY, XERIAL_HEADER) == b""


@given(data=st.binary(min_size=1, max_size=2048))
def test_snappy_reads_raw_snappy_without_the_xerial_frame(data: bytes) -> None:
    assert decompress(COMPRESSION_SNAPPY, snappy.compress(data)) == data
    assert decompress(COMPRESSION_SNAPPY, bytes(cramjam.snappy.compress_raw(data))) == data


def test_snappy_reads_concatenated_xerial_streams() -> None:
    stream = compress(COMPRESSION_SNAPPY, b"first ") + compress(COMPRESSION_SNAPPY, b"second")
    assert decompress(COMPRESSION_SNAPPY, stream) == b"first second"


def test_snappy_ignores_the_xerial_version_fields() -> None:
    # Some producers write version and compatible version little-endian.
    stream = compress(COMPRESSION_SNAPPY, b"payload")
    little_endian = stream[:8] + struct.pack("<ii", 1, 1) + stream[16:]
    assert decompress(COMPRESSION_SNAPPY, little_endian) == b"payload"


@pytest.mark.parametrize(
    "stream",
    [
        XERIAL_HEADER[:12],  # header cut short
        XERIAL_HEADER + b"\x00\x00",  # block length cut short
        XERIAL_HEADER + struct.pack(">i", 100) + b"abc",  # block longer than the data
        XERIAL_HEADER + struct.pack(">i", -5) + b"abc",  # negative block length
        XERIAL_HEADER + struct.pack(">i", 3) + b"\xff\xff\xff",  # block is not snappy
    ],
    ids=["header", "length", "overlong", "negative", "garbage"],
)
def test_snappy_refuses_broken_xerial_framing(stream: bytes) -> None:
    with pytest.raises(CorruptRecordError, match="snappy"):
        decompress(COMPRESSION_SNAPPY, stream)


# --- lz4 ---------------------------------------------------------------------


def test_lz4_writes_the_frame_descriptor_kafka_java_writes() -> None:
    frame = compress(COMPRESSION_LZ4, b"some records " * 100)
    magic, flg, bd = struct.unpack_from("<IBB", frame)
    assert magic == 0x184D2204
    assert flg == 0x60  # version 1, independent blocks, no checksums, no content size
    assert bd == 0x40  # 64 KiB blocks
    assert frame[:7] == LZ4_FRAME_HEADER
    assert frame.endswith(b"\x00\x00\x00\x00")  # end mark, no content checksum


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_lz4_frames_decode_with_the_reference_library(size: int) -> None:
    # python-lz4 checks the header checksum byte, so this also proves it right.
    data = half_random(size)
    assert lz4.frame.decompress(compress(COMPRESSION_LZ4, data)) == data


def test_lz4_stores_incompressible_blocks_uncompressed_as_java_does() -> None:
    data = os.urandom(1000)
    frame = compress(COMPRESSION_LZ4, data)
    (size,) = struct.unpack_from("<I", frame, 7)
    assert size == 0x80000000 | len(data)
    assert frame[11 : 11 + len(data)] == data
    assert decompress(COMPRESSION_LZ4, frame) == data


@pytest.mark.parametrize(
    "options",
    [
        {"block_linked": False},  # kafka-python's choice: content size stored
        {"block_linked": True},
        {"content_checksum": True, "block_checksum": True},
        {"store_size": False, "block_size": lz4.frame.BLOCKSIZE_MAX4MB},
    ],
    ids=["kafka-python", "linked", "checksums", "4mb-blocks"],
)
def test_lz4_reads_any_lz4_frame(options: dict[str, object]) -> None:
    data = half_random(200_000)
    assert decompress(COMPRESSION_LZ4, lz4.frame.compress(data, **options)) == data


# --- zstd --------------------------------------------------------------------


def test_zstd_writes_a_frame_the_reference_library_reads() -> None:
    data = half_random(100_000)
    assert zstandard.ZstdDecompressor().decompress(compress(COMPRESSION_ZSTD, data)) == data


def test_zstd_reads_streamed_frames_without_a_content_size() -> None:
    # Java's ZstdOutputStream streams, so its frames do not state their size.
    data = half_random(100_000)
    compressor = zstandard.ZstdCompressor().compressobj()
    frame = compressor.compress(data) + compressor.flush()
    assert zstandard.get_frame_parameters(frame).content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert decompress(COMPRESSION_ZSTD, frame) == data


# --- undecodable data --------------------------------------------------------


@pytest.mark.parametrize("codec", COMPRESSED, ids=COMPRESSION_NAMES.get)
@pytest.mark.parametrize("garbage", [b"", b"\xff", b"not compressed at all, just text"])
def test_garbage_is_a_corrupt_record_error(codec: int, garbage: bytes) -> None:
    with pytest.raises(CorruptRecordError, match=COMPRESSION_NAMES[codec]):
        decompress(codec, garbage)


@pytest.mark.parametrize("codec", COMPRESSED, ids=COMPRESSION_NAMES.get)
def test_a_truncated_stream_is_a_corrupt_record_error(codec: int) -> None:
    packed = compress(codec, half_random(100_000))
    for cut in (1, len(packed) // 2, len(packed) - 1):
        with pytest.raises(CorruptRecordError):
            decompress(codec, packed[:cut])


@pytest.mark.parametrize("codec", COMPRESSED, ids=COMPRESSION_NAMES.get)
@given(garbage=st.binary(max_size=300))
def test_random_bytes_decode_or_raise_corrupt_record_error_only(
    codec: int, garbage: bytes
) -> None:
    try:
        decompress(codec, garbage)
    except CorruptRecordError as exc:
        assert "\n" not in str(exc)
