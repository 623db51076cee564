"""Kafka's batch compression codecs, byte-compatible with the Java client.

A compressed batch compresses its whole records section as one stream; the
codec number sits in the low three bits of the batch attributes (see
`shm.record_batch`). Each codec here writes what Kafka's Java producer writes,
so that any Kafka consumer can read our batches, and reads everything a Kafka
producer may send:

- gzip: a standard gzip stream (RFC 1952), level 6 as Java's Deflater default.
  Several concatenated members decode as one, as Java's GZIPInputStream does.
- snappy: xerial's block framing (org.xerial.snappy.SnappyOutputStream), not
  Google's snappy framing format; raw snappy is accepted on decode because
  xerial's reader accepts it too (and some old clients write it).
- lz4: an LZ4 frame with independent blocks, laid out exactly as Kafka's
  Lz4BlockOutputStream does; Kafka's reader rejects dependent (linked) blocks,
  and cramjam's own frame encoder links them, so the frame is built here from
  raw blocks. Any valid LZ4 frame decodes.
- zstd: one zstd frame at level 3 (Kafka's default). Decoding does not need the
  content size in the frame header: Java's streaming zstd omits it.

Only `cramjam` is needed at run time. Undecodable input raises
CorruptRecordError, which the protocol layer maps to CORRUPT_MESSAGE.
"""

from __future__ import annotations

import struct

import cramjam

from shm.errors import CorruptRecordError
from shm.record_batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NAMES,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
)

Buffer = bytes | bytearray | memoryview

GZIP_LEVEL = 6  # java.util.zip.Deflater.DEFAULT_COMPRESSION means zlib level 6
ZSTD_LEVEL = 3  # Kafka's CompressionType.ZSTD default level

# Xerial snappy stream, as org.xerial.snappy.SnappyOutputStream writes it:
#
#     offset size  field
#      0      8    magic       0x82 'S' 'N' 'A' 'P' 'P' 'Y' 0x00  (0x82 is -126)
#      8      4    version     int32 BE, 1
#     12      4    compatible  int32 BE, 1
#     16      ...  blocks      [int32 BE compressed length][raw snappy block] ...
#
# Each block compresses at most 32 KiB of input (xerial's and Kafka's default
# block size). On decode the version fields are ignored, as kafka-python does:
# some producers write them little-endian. A stream may be followed by another
# whole stream (xerial's reader accepts concatenation), so a magic in place of
# a block length starts a new header.
XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
XERIAL_HEADER_SIZE = len(XERIAL_HEADER)  # 16
XERIAL_BLOCK_SIZE = 32 * 1024

# LZ4 frame, as Kafka's Lz4BlockOutputStream writes it (all little-endian):
#
#     magic 0x184D2204 | FLG 0x60 | BD 0x40 | HC | blocks ... | end mark 0x00000000
#
# FLG 0x60: version 01, independent blocks, no block checksum, no content size,
# no content checksum. BD 0x40: blocks of at most 64 KiB. HC is the second byte
# of xxHash32(FLG BD, seed 0): 0x82 for these two bytes. Each block is
# [uint32 length][data]; the length's top bit marks a block stored uncompressed
# because compressing it did not make it smaller.
LZ4_FRAME_HEADER = b"\x04\x22\x4d\x18\x60\x40\x82"
LZ4_BLOCK_SIZE = 64 * 1024
LZ4_UNCOMPRESSED_BIT = 0x80000000
LZ4_END_MARK = b"\x00\x00\x00\x00"

_INT32_BE = struct.Struct(">i")
_UINT32_LE = struct.Struct("<I")


def codec_of(compression: str | int) -> int:
    """Resolve a codec name ("none", "gzip", "snappy", "lz4", "zstd") or number.

    Lets callers say compression="lz4" as Kafka's producer config does while the
    batch header needs the number. Raises ValueError for anything else.
    """
    if isinstance(compression, str):
        for codec, name in COMPRESSION_NAMES.items():
            if name == compression.lower():
                return codec
    elif isinstance(compression, int) and compression in COMPRESSION_NAMES:
        return compression
    names = ", ".join(COMPRESSION_NAMES.values())
    raise ValueError(f"unknown compression {compression!r}: expected one of {names}")


def compress(codec: int, data: Buffer) -> bytes:
    """Compress a records section the way Kafka's Java producer does for `codec`.

    Raises ValueError for an unknown codec (a caller's mistake, not bad data).
    """
    if codec == COMPRESSION_NONE:
        return bytes(data)
    if codec == COMPRESSION_GZIP:
        return bytes(cramjam.gzip.compress(data, level=GZIP_LEVEL))
    if codec == COMPRESSION_SNAPPY:
        return _xerial_snappy_encode(data)
    if codec == COMPRESSION_LZ4:
        return _lz4_frame_encode(data)
    if codec == COMPRESSION_ZSTD:
        return bytes(cramjam.zstd.compress(data, level=ZSTD_LEVEL))
    raise ValueError(f"unknown compression codec {codec}")


def decompress(codec: int, data: Buffer) -> bytes:
    """Decompress a records section written by any Kafka client with `codec`.

    Raises CorruptRecordError for undecodable data or an unknown codec, since
    either means the batch cannot be read.
    """
    if codec == COMPRESSION_NONE:
        return bytes(data)
    name = COMPRESSION_NAMES.get(codec)
    if name is None:
        raise CorruptRecordError(f"compression codec {codec} is unknown")
    try:
        if codec == COMPRESSION_GZIP:
            return bytes(cramjam.gzip.decompress(data))
        if codec == COMPRESSION_SNAPPY:
            return _snappy_decode(data)
        if codec == COMPRESSION_LZ4:
            return bytes(cramjam.lz4.decompress(data))
        return bytes(cramjam.zstd.decompress(data))
    except cramjam.DecompressionError as exc:
        raise CorruptRecordError(f"{name} records section does not decompress: {exc}") from None


def _xerial_snappy_encode(data: Buffer) -> bytes:
    out = bytearray(XERIAL_HEADER)
    with memoryview(data) as view:
        for start in range(0, len(view), XERIAL_BLOCK_SIZE):
            block = cramjam.snappy.compress_raw(view[start : start + XERIAL_BLOCK_SIZE])
            out += _INT32_BE.pack(len(block))
            out += block
    return bytes(out)


def _snappy_decode(data: Buffer) -> bytes:
    with memoryview(data) as view:
        if view[: len(XERIAL_MAGIC)] != XERIAL_MAGIC:
            return bytes(cramjam.snappy.decompress_raw(view))
        parts = []
        pos = 0
        end = len(view)
        while pos < end:
            if view[pos : pos + len(XERIAL_MAGIC)] == XERIAL_MAGIC:
                if end - pos < XERIAL_HEADER_SIZE:
                    raise CorruptRecordError("snappy xerial header truncated")
                pos += XERIAL_HEADER_SIZE
                continue
            if end - pos < 4:
                raise CorruptRecordError("snappy xerial block length truncated")
            (size,) = _INT32_BE.unpack_from(view, pos)
            pos += 4
            if size < 0 or size > end - pos:
                raise CorruptRecordError(
                    f"snappy xerial block of {size} bytes, {end - pos} bytes left"
                )
            parts.append(bytes(cramjam.snappy.decompress_raw(view[pos : pos + size])))
            pos += size
    return b"".join(parts)


def _lz4_frame_encode(data: Buffer) -> bytes:
    out = bytearray(LZ4_FRAME_HEADER)
    with memoryview(data) as view:
        for start in range(0, len(view), LZ4_BLOCK_SIZE):
            chunk = view[start : start + LZ4_BLOCK_SIZE]
            block = cramjam.lz4.compress_block(chunk, store_size=False)
            if len(block) < len(chunk):
                out += _UINT32_LE.pack(len(block))
                out += block
            else:
                out += _UINT32_LE.pack(len(chunk) | LZ4_UNCOMPRESSED_BIT)
                out += chunk
    out += LZ4_END_MARK
    return bytes(out)
