"""kafka-python as an independent oracle for the batch format, in both directions.

kafka-python (kafka.record.default_records) is a separate implementation of
Kafka's DefaultRecordBatch. Batches it builds must validate and decode with
ours to the same records, and batches we build must pass its CRC check and
decode with it to the same records, for every codec. Its codecs use
python-snappy, lz4 and zstandard, so they also check ours against other
compression libraries than cramjam.
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shm.record_batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NAMES,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
    TIMESTAMP_LOG_APPEND_TIME,
    validate_batch,
    validate_record_set,
)
from shm.records import Record, decode_batch, encode_batch, encode_varlong, iter_batches

# Importing kafka loads its whole protocol package, which warns about
# importlib.resources APIs it uses; that is kafka-python's business, not ours.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import (
        ControlRecord,
        DefaultRecordBase,
        DefaultRecordBatch,
        DefaultRecordBatchBuilder,
    )
    from kafka.record.memory_records import MemoryRecords
    from kafka.record.util import encode_varint as kafka_encode_varint

# Our codec numbers are Kafka's; kafka-python names them on DefaultRecordBase.
KAFKA_PYTHON_CODECS = {
    COMPRESSION_NONE: DefaultRecordBase.CODEC_NONE,
    COMPRESSION_GZIP: DefaultRecordBase.CODEC_GZIP,
    COMPRESSION_SNAPPY: DefaultRecordBase.CODEC_SNAPPY,
    COMPRESSION_LZ4: DefaultRecordBase.CODEC_LZ4,
    COMPRESSION_ZSTD: DefaultRecordBase.CODEC_ZSTD,
}
CODECS = sorted(KAFKA_PYTHON_CODECS)

nullable_bytes = st.none() | st.binary(max_size=300)
headers = st.lists(st.tuples(st.text(max_size=20), nullable_bytes), max_size=4).map(tuple)
# Real millisecond timestamps, not always in order within a batch.
timestamps = st.integers(0, 2**45)
records = st.builds(
    Record, value=nullable_bytes, key=nullable_bytes, timestamp=timestamps, headers=headers
)
record_lists = st.lists(records, min_size=1, max_size=50)


def kafka_python_batch(
    batch: list[Record],
    codec: int,
    *,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
) -> bytes:
    """Build a batch with kafka-python's producer-side builder."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=KAFKA_PYTHON_CODECS[codec],
        is_transactional=is_transactional,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 30,
    )
    for offset_delta, record in enumerate(batch):
        metadata = builder.append(
            offset_delta, record.timestamp, record.key, record.value, list(record.headers)
        )
        assert metadata is not None
    return bytes(builder.build())


def kafka_python_records(buf: bytes) -> list[Record]:
    """Decode one batch with kafka-python, after its own CRC check."""
    batch = DefaultRecordBatch(buf)
    assert batch.validate_crc()
    return [as_record(r) for r in batch]


def as_record(r: object) -> Record:
    return Record(
        value=r.value,  # type: ignore[attr-defined]
        key=r.key,  # type: ignore[attr-defined]
        timestamp=r.timestamp,  # type: ignore[attr-defined]
        headers=tuple(tuple(h) for h in r.headers),  # type: ignore[attr-defined]
        offset=r.offset,  # type: ignore[attr-defined]
    )


def numbered(batch: list[Record], base_offset: int = 0) -> list[Record]:
    return [
        Record(r.value, r.key, r.timestamp, r.headers, base_offset + i)
        for i, r in enumerate(batch)
    ]


# --- kafka-python builds, we read ------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS, ids=COMPRESSION_NAMES.get)
@given(batch=record_lists)
@settings(deadline=None)
def test_kafka_python_batches_validate_and_decode_with_ours(
    codec: int, batch: list[Record]
) -> None:
    buf = kafka_python_batch(batch, codec)
    header = validate_batch(buf)
    # kafka-python sends a batch uncompressed when compressing does not shrink it.
    assert header.compression in (codec, COMPRESSION_NONE)
    assert header.record_count == len(batch)
    assert header.base_timestamp == batch[0].timestamp
    assert header.max_timestamp == max(r.timestamp for r in batch if r.timestamp is not None)
    assert decode_batch(buf).records == numbered(batch)


@pytest.mark.parametrize("codec", CODECS, ids=COMPRESSION_NAMES.get)
def test_kafka_python_compressed_batches_decode_with_ours(codec: int) -> None:
    # Compressible values, so that kafka-python really does compress.
    batch = [
        Record(b"order-%d " % i * 40, key=b"customer-%d" % (i % 7), timestamp=1_700_000_000_000 + i,
               headers=(("trace", b"abc"),))
        for i in range(2_000)
    ]
    buf = kafka_python_batch(batch, codec)
    assert validate_batch(buf).compression == codec
    assert decode_batch(buf).records == numbered(batch)


def test_kafka_python_producer_state_reads_back() -> None:
    batch = [Record(b"a", timestamp=1), Record(b"b", timestamp=2)]
    buf = kafka_python_batch(
        batch, COMPRESSION_NONE, producer_id=77, producer_epoch=2, base_sequence=40,
        is_transactional=True,
    )
    header = validate_batch(buf)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (77, 2, 40)
    assert header.is_transactional


# --- we build, kafka-python reads ----------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS, ids=COMPRESSION_NAMES.get)
@given(batch=record_lists, base_offset=st.integers(0, 2**40))
@settings(deadline=None)
def test_our_batches_pass_kafka_pythons_crc_and_decode_with_it(
    codec: int, batch: list[Record], base_offset: int
) -> None:
    buf = encode_batch(batch, compression=codec, base_offset=base_offset)
    theirs = DefaultRecordBatch(buf)
    assert theirs.compression_type == codec
    assert theirs.base_offset == base_offset
    assert theirs.records_count == len(batch)
    assert theirs.first_timestamp == batch[0].timestamp
    assert kafka_python_records(buf) == numbered(batch, base_offset)


def test_our_producer_fields_read_back_with_kafka_python() -> None:
    buf = encode_batch(
        [Record(b"a", timestamp=5)], compression="zstd", producer_id=99, producer_epoch=4,
        base_sequence=1_000, is_transactional=True, partition_leader_epoch=12,
    )
    theirs = DefaultRecordBatch(buf)
    assert theirs.validate_crc()
    assert (theirs.producer_id, theirs.producer_epoch, theirs.base_sequence) == (99, 4, 1_000)
    assert theirs.is_transactional and not theirs.is_control_batch
    assert theirs.leader_epoch == 12


def test_our_log_append_time_batches_read_the_same_with_kafka_python() -> None:
    batch = [Record(b"a", timestamp=10), Record(b"b", timestamp=50), Record(b"c", timestamp=20)]
    buf = encode_batch(batch, timestamp_type=TIMESTAMP_LOG_APPEND_TIME, compression="lz4")
    theirs = DefaultRecordBatch(buf)
    assert theirs.timestamp_type == TIMESTAMP_LOG_APPEND_TIME
    assert [r.timestamp for r in kafka_python_records(buf)] == [50, 50, 50]
    assert [r.timestamp for r in decode_batch(buf).records] == [50, 50, 50]


def test_our_control_batch_is_a_commit_marker_to_kafka_python() -> None:
    # Control record key: version int16 0, type int16 1 (commit); value: the
    # EndTxnMarker, version int16 0 and coordinator epoch int32.
    marker = Record(b"\x00\x00\x00\x00\x00\x05", key=b"\x00\x00\x00\x01", timestamp=9)
    buf = encode_batch([marker], is_control=True, is_transactional=True, producer_id=3,
                       producer_epoch=0)
    theirs = DefaultRecordBatch(buf)
    assert theirs.validate_crc() and theirs.is_control_batch
    (record,) = list(theirs)
    assert isinstance(record, ControlRecord)
    assert record.commit


@pytest.mark.parametrize("codec", CODECS, ids=COMPRESSION_NAMES.get)
@given(batches=st.lists(record_lists, min_size=1, max_size=4), cut=st.integers(1, 60))
@settings(deadline=None, max_examples=25)
def test_a_log_of_our_batches_reads_the_same_with_memory_records(
    codec: int, batches: list[list[Record]], cut: int
) -> None:
    # A fetch response: whole batches, then maybe the start of one more.
    log, want, offset = b"", [], 0
    for batch in batches:
        log += encode_batch(batch, base_offset=offset, compression=codec)
        want += numbered(batch, offset)
        offset += len(batch)
    assert len(validate_record_set(log)) == len(batches)
    fetched = log + encode_batch([Record(b"partial")], base_offset=offset)[:cut]

    theirs = []
    memory_records = MemoryRecords(fetched)
    while memory_records.has_next():
        batch = memory_records.next_batch()
        assert batch.validate_crc()
        theirs += [as_record(r) for r in batch]
    ours = [r for b in iter_batches(fetched) for r in b.records]
    assert theirs == ours == want


# --- varints -------------------------------------------------------------------------


@given(st.integers(-(2**63), 2**63 - 1))
def test_our_varlongs_are_kafka_pythons_varints(value: int) -> None:
    # kafka-python's encode_varint is the 64-bit zigzag varint (Kafka's varlong);
    # for values in the int32 range it is also Kafka's varint.
    theirs = bytearray()
    kafka_encode_varint(value, theirs.append)
    assert encode_varlong(value) == bytes(theirs)


@given(batch=record_lists, base_offset=st.integers(0, 2**40))
@settings(deadline=None)
def test_uncompressed_batches_are_byte_identical_to_kafka_pythons(
    batch: list[Record], base_offset: int
) -> None:
    # kafka-python writes partitionLeaderEpoch 0 where Java's producer writes -1;
    # given the same, every byte matches, the CRC included.
    theirs = bytearray(kafka_python_batch(batch, COMPRESSION_NONE))
    theirs[:8] = base_offset.to_bytes(8, "big")
    ours = encode_batch(batch, base_offset=base_offset, partition_leader_epoch=0)
    assert ours == bytes(theirs)
