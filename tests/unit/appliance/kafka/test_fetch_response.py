"""fetch_response.encode_fetch_response, the hand-written FetchResponse
v4-v11, against kio's own writer for the same values: byte for byte, for
every version and random partitions; and record sets pass through as the
very objects they were (no copy)."""

from __future__ import annotations

import datetime
import io

from hypothesis import given, settings
from hypothesis import strategies as st
from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.response_header.v0.header import ResponseHeader
from kio.serial import entity_writer

from appliance.kafka.fetch_response import FetchedPartition, encode_fetch_response

FETCH = 1
VERSIONS = range(4, 12)
ERROR_CODES = [0, 1, 3, 6, 75, -1]  # none, out of range, unknown topic, not leader, ...
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
I32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)


def kio_fetch_response(version: int, correlation_id: int, partitions: list[FetchedPartition],
                       error_code: int) -> bytes:
    """What kio writes for the same values: response header v0 then the body.
    The hand-written encoder never writes a null record set (librdkafka refuses
    one) and gives the high watermark as the last stable offset (no
    transactions), so the oracle is told the same."""
    cls = load_response_schema(FETCH, version)
    module = __import__(cls.__module__, fromlist=["PartitionData"])
    topics: list[tuple[str, list]] = []
    for fetched in partitions:
        if not topics or topics[-1][0] != fetched.topic:
            topics.append((fetched.topic, []))
        fields = {"partition_index": fetched.partition,
                  "error_code": ErrorCode(fetched.error_code),
                  "high_watermark": fetched.high_watermark,
                  "last_stable_offset": fetched.high_watermark,
                  "aborted_transactions": None,
                  "records": bytes(fetched.records) if fetched.records is not None else b""}
        if version >= 5:
            fields["log_start_offset"] = fetched.log_start_offset
        if version >= 11:
            fields["preferred_read_replica"] = -1
        topics[-1][1].append(module.PartitionData(**fields))
    body = {"throttle_time": datetime.timedelta(0),
            "responses": tuple(module.FetchableTopicResponse(topic=name, partitions=tuple(ps))
                               for name, ps in topics)}
    if version >= 7:
        body.update(error_code=ErrorCode(error_code), session_id=0)
    out = io.BytesIO()
    entity_writer(ResponseHeader)(out, ResponseHeader(correlation_id=correlation_id))
    entity_writer(cls)(out, cls(**body))
    return out.getvalue()


records = st.one_of(
    st.none(), st.just(b""),
    st.binary(min_size=1, max_size=400),
    st.binary(min_size=1, max_size=400).map(memoryview),
    st.binary(min_size=1, max_size=400).map(bytearray),
)


@st.composite
def fetched_partitions(draw) -> list[FetchedPartition]:
    """Topics in runs (the encoder groups consecutive partitions of one topic),
    a topic name sometimes repeated after another (a new group, as Kafka allows)."""
    names = draw(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=4))
    out = []
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        topic = draw(st.sampled_from(names))
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            out.append(FetchedPartition(
                topic, draw(st.integers(min_value=0, max_value=2**31 - 1)),
                draw(st.sampled_from(ERROR_CODES)), draw(I64), draw(I64), draw(records)))
    return out


@settings(max_examples=400, deadline=None)
@given(version=st.sampled_from(VERSIONS), correlation_id=I32,
       partitions=fetched_partitions(), error_code=st.sampled_from(ERROR_CODES))
def test_the_hand_written_encoder_writes_what_kio_writes(version, correlation_id, partitions,
                                                         error_code):
    buffers = encode_fetch_response(version, correlation_id, partitions, error_code)
    got = b"".join(bytes(b) for b in buffers)
    assert got == kio_fetch_response(version, correlation_id, partitions, error_code)


def test_every_version_with_no_partitions():
    for version in VERSIONS:
        got = b"".join(bytes(b) for b in encode_fetch_response(version, 7, []))
        assert got == kio_fetch_response(version, 7, [], 0), version


def test_a_memoryview_record_set_is_passed_through_not_copied():
    backing = bytearray(b"\x00" * 61 + b"batch bytes")
    view = memoryview(backing)[3:]
    partitions = [FetchedPartition("t", 0, 0, 10, 0, view),
                  FetchedPartition("t", 1, 0, 10, 0, None),
                  FetchedPartition("u", 0, 0, 10, 0, view)]
    for version in VERSIONS:
        buffers = encode_fetch_response(version, 1, partitions)
        same = [b for b in buffers if b is view]
        assert len(same) == 2, version  # both record sets, by reference
        assert sum(isinstance(b, memoryview) for b in buffers) == 2
        backing[-1:] = b"!"  # a later write to the map shows through: nothing was copied
        assert b"".join(bytes(b) for b in buffers).endswith(b"batch byte!")
        backing[-1:] = b"s"


def test_header_buffers_alternate_with_record_sets():
    view = memoryview(b"R" * 70)
    partitions = [FetchedPartition("t", p, 0, 5, 0, view if p % 2 else None) for p in range(4)]
    buffers = encode_fetch_response(11, 9, partitions)
    kinds = ["records" if b is view else "head" for b in buffers]
    assert kinds == ["head", "head", "records", "head", "records"]
