"""Bad input against a real appliance: random and mutated multipart messages.

The fuzz throws well over 10,000 messages at the front end over one DEALER:
empty and random frames, JSON of every wrong shape, each API with fields of
the wrong type, missing, unknown, huge or negative, fetches with absurd
limits, produces with garbage, truncated and bit-flipped record batches,
mismatched frame counts, bad acks, illegal and over-long topic names. It
does not wait for each reply (acks=0 and long polls legitimately answer
late or never); it drains replies as it goes and checks that every one is a
protocol Response whose errors are Kafka error names.

Afterwards: the supervisor and both workers are the same processes, the
records acknowledged before the fuzz read back exactly, a fresh round trip
works, every partition of every topic decodes from its first offset to its
high watermark (no corrupt batch got in), and SIGTERM stops the appliance
with exit code 0.

The seed is random per run and printed; RINGLOG_FUZZ_SEED=<n> replays one.
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import zmq

import appliance.group_coordinator  # noqa: F401  (registers the group errors' names)
from appliance import protocol
from appliance.client import Consumer, Producer
from appliance.metadata import MAX_TOPIC_NAME
from shm.errors import UnknownServerError, error_for
from shm.record_batch import CRC_OFFSET, compute_crc
from shm.records import Record, encode_batch, iter_batches
from tests.polling import wait_for
from tests.seeded import fuzz_seed, replayable

from .conftest import Appliance, start_appliance

MESSAGES = 15_000
FUZZ_BUDGET_S = 35.0  # the sending phase stops here even if MESSAGES are not all out
KNOWN_TOPIC = "fuzz-known"
KNOWN_PARTITIONS = 3
KNOWN_RECORDS = 150
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")

# Topics the fuzz may create, write valid batches to, alter and delete. The
# known topic only ever gets invalid batches and read-only requests.
FUZZ_TOPICS = [f"fz-{i}" for i in range(10)] + ["fz." + "L" * (MAX_TOPIC_NAME - 3)]
ILLEGAL_TOPICS = ["", ".", "..", "a b", "a/b", "../etc", "t\x00", "ü", "x" * (MAX_TOPIC_NAME + 1),
                  "y" * 10_000, "tab\t", "semi;colon", "*", "topic\n"]
WRONG_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1,
    2**64, 10**30, -(10**30), 0.5, -1.0, 1e308, "", "1", "x" * 300, "\u0000", "é☃",
    [], [None], [1, 2, 3], [[]], [["t", 0]], {}, {"a": 1}, {"": None}, [{}] * 3,
]
# UNKNOWN_SERVER_ERROR replies the fuzz tolerates: none. Any one fails the fuzz.
KNOWN_SERVER_BUGS: dict[str, str] = {}
HUGE_INTS = [2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, -(2**63), -1, -2, 0, 10**9]


def _known_error(name: object) -> bool:
    return isinstance(name, str) and error_for(name).name == name


def _error_names(value: Any) -> Iterator[Any]:
    """Every "error" field anywhere in a reply header, recursively."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "error":
                yield item
            else:
                yield from _error_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from _error_names(item)


def _dumps(header: Any) -> bytes:
    """orjson when it can; the stdlib for ints orjson refuses (beyond 64 bits)."""
    try:
        return orjson.dumps(header)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(header).encode()


class Generator:
    """Random and mutated requests, reproducible from the seed."""

    def __init__(self, rng: random.Random, known_topic: str, apis: list[str]):
        self.rng = rng
        self.known_topic = known_topic
        self.apis = apis
        self.next_id = 1_000
        self.ids: set[int] = {1}  # wrong_shapes() sends {"id": 1}

    # --- building blocks --------------------------------------------------------------

    def request_id(self) -> int:
        self.next_id += 1
        self.ids.add(self.next_id)
        return self.next_id

    def wrong(self) -> Any:
        return self.rng.choice(WRONG_VALUES)

    def small_int(self) -> int:
        return self.rng.choice([0, 0, 1, 2, 3, -1, self.rng.randrange(-5, 10)])

    def any_int(self) -> int:
        return self.rng.choice([self.small_int(), self.rng.choice(HUGE_INTS)])

    def readable_topic(self) -> str:
        """A topic for requests that read: any, the known one included."""
        r = self.rng.random()
        if r < 0.5:
            return self.rng.choice(FUZZ_TOPICS)
        if r < 0.7:
            return self.known_topic
        if r < 0.85:
            return self.rng.choice(ILLEGAL_TOPICS)
        return "unknown-" + self.rng.choice(["a", "b", "c"])  # may get auto-created

    def writable_topic(self) -> str:
        """A topic a valid batch may land in: never the known one."""
        r = self.rng.random()
        if r < 0.8:
            return self.rng.choice(FUZZ_TOPICS)
        if r < 0.95:
            return self.rng.choice(ILLEGAL_TOPICS)
        return "__consumer_offsets"  # internal: refused

    def random_bytes(self, max_len: int = 300) -> bytes:
        return self.rng.randbytes(self.rng.randrange(max_len + 1))

    # --- record batches -----------------------------------------------------------------

    def valid_batch(self) -> bytes:
        rng = self.rng
        records = []
        for _ in range(rng.choice([1, 1, 2, 5, 20])):
            headers = tuple((rng.choice(["h", "", "ключ"]), rng.choice([None, b"", b"v"]))
                            for _ in range(rng.choice([0, 0, 1, 3])))
            timestamp = rng.choice([None, None, None, 0, -1, 1_700_000_000_000, 2**62])
            records.append(Record(value=rng.choice([None, b"", self.random_bytes(200)]),
                                  key=rng.choice([None, b"", self.random_bytes(20)]),
                                  timestamp=timestamp, headers=headers))
        return encode_batch(
            records, compression=rng.choice(CODECS),
            timestamp_type=rng.choice([0, 0, 1]),
            producer_id=rng.choice([-1, -1, 0, 2**62]),
            producer_epoch=rng.choice([-1, 0, 32767]),
            base_sequence=rng.choice([-1, 0, 2**31 - 1]),
            base_offset=rng.choice([0, 0, -1, 2**62]),
            partition_leader_epoch=rng.choice([-1, 0, 2**31 - 1]))

    def invalid_batch(self) -> bytes:
        """Bytes the broker must refuse: each keeps the CRC wrong or the frame short."""
        rng = self.rng
        good = bytearray(self.valid_batch())
        kind = rng.randrange(9)
        if kind == 0:  # flip bits in the magic, the CRC or the CRC-covered body
            for _ in range(rng.choice([1, 1, 2, 3])):
                pos = rng.randrange(CRC_OFFSET - 1, len(good))
                good[pos] ^= 1 << rng.randrange(8)
            return bytes(good)
        if kind == 1:  # truncated
            return bytes(good[:rng.randrange(len(good))])
        if kind == 2:  # a valid batch followed by garbage (all or nothing)
            return bytes(good) + self.random_bytes(100) + b"\x00"
        if kind == 3:  # a valid batch, then a truncated one
            return bytes(good) + bytes(good[:rng.randrange(1, len(good))])
        if kind == 4:  # batchLength lies (longer than the frame, negative, tiny)
            struct.pack_into(">i", good, 8, rng.choice([len(good), -1, 0, 2**31 - 1, 48]))
            return bytes(good)
        if kind == 5:  # header field changed, CRC left as it was
            offset = rng.choice([21, 23, 27, 35, 43, 51, 53, 57])
            good[offset] ^= 0xFF
            return bytes(good)
        if kind == 6:  # a bad magic with the CRC recomputed
            good[16] = rng.choice([0, 1, 3, 255])
            struct.pack_into(">I", good, CRC_OFFSET, compute_crc(good))
            return bytes(good)
        if kind == 7:  # record count that cannot fit, CRC recomputed (caught before records)
            struct.pack_into(">i", good, 57, 2**31 - 1)
            struct.pack_into(">i", good, 23, 2**31 - 2)
            good[22] &= 0xF8  # uncompressed, so the size check applies
            struct.pack_into(">I", good, CRC_OFFSET, compute_crc(good))
            return bytes(good)
        return self.random_bytes(rng.choice([0, 10, 60, 61, 62, 500]))

    def record_set(self, topic: str) -> bytes:
        if topic == self.known_topic or self.rng.random() < 0.5:
            return self.invalid_batch()
        if self.rng.random() < 0.003:  # over message.max.bytes: MESSAGE_TOO_LARGE
            return encode_batch([Record(value=self.rng.randbytes(1_100_000))])
        if self.rng.random() < 0.2:
            return self.valid_batch() + self.valid_batch()
        return self.valid_batch()

    # --- valid-looking fields per API -------------------------------------------------

    def topic_spec(self) -> Any:
        rng = self.rng
        spec: dict[str, Any] = {"name": rng.choice(FUZZ_TOPICS + ILLEGAL_TOPICS)}
        if rng.random() < 0.8:
            spec["partitions"] = rng.choice([1, 2, 3, 4, 0, -1, 10**9, 2**63 - 1, -(2**63)])
        if rng.random() < 0.3:
            spec["replication_factor"] = rng.choice([1, 1, 0, -1, 2, 3, 2**63 - 1])
        if rng.random() < 0.3:
            spec["configs"] = self.configs()
        if rng.random() < 0.05:
            spec["bogus"] = self.wrong()
        return spec

    def configs(self) -> Any:
        rng = self.rng
        choices = [("retention.ms", ["-1", "86400000", "-2", "abc", "1e3"]),
                   ("retention.bytes", ["-1", "1048576", "x"]),
                   ("segment.bytes", ["1048576", "1", "1024", str(2**31), "-5"]),
                   ("max.message.bytes", ["1048588", "100", "0", "-1"]),
                   ("flush.policy", ["batch", "interval", "os", "never"]),
                   ("cleanup.policy", ["delete", "compact"]),
                   ("index.interval.bytes", ["4096", "0"]),
                   ("segmnet.bytes", ["1024"]), ("", ["1"]), ("log.retention.ms", ["1"])]
        return {key: rng.choice(values) for key, values in rng.sample(choices, rng.randrange(3))}

    def fields_for(self, api: str) -> tuple[dict[str, Any], list[bytes]]:
        rng = self.rng
        payloads: list[bytes] = []
        if api == "metadata":
            fields: dict[str, Any] = {}
            if rng.random() < 0.7:
                fields["topics"] = rng.choice([None, [self.readable_topic()
                                                      for _ in range(rng.randrange(4))]])
            if rng.random() < 0.5:
                fields["allow_auto_create"] = rng.random() < 0.5
        elif api == "create_topics":
            fields = {"topics": [self.topic_spec() for _ in range(rng.randrange(4))]}
        elif api == "delete_topics":
            # Only names that cannot be deleted: deleting a topic and creating it again
            # races its old and new owners (see test_a_deleted_and_recreated_topic_...).
            fields = {"topics": [rng.choice([*ILLEGAL_TOPICS, "__consumer_offsets", "never-was"])
                                 for _ in range(rng.randrange(3))]}
        elif api == "describe_topics":
            fields = {"topics": rng.choice([None, [self.readable_topic()
                                                   for _ in range(rng.randrange(3))]])}
        elif api == "alter_configs":
            fields = {"topic": rng.choice(FUZZ_TOPICS + ILLEGAL_TOPICS + ["never-was"]),
                      "configs": self.configs()}
            if rng.random() < 0.3:  # names to send back to their defaults, typos among them
                fields["deleted"] = [rng.choice(["retention.ms", "segment.bytes", "segmnet.bytes",
                                                 "", "log.retention.ms"])
                                     for _ in range(rng.randrange(3))]
        elif api == "produce":
            entries = []
            for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
                topic = self.writable_topic() if rng.random() < 0.6 else self.readable_topic()
                entries.append([topic, rng.choice([0, 0, 1, 2, 3, -1, 2**31, 2**63 - 1])])
                payloads.append(self.record_set(topic))
            fields = {"acks": rng.choice([1, -1, -1, 0] * 6 + [2, -2, 2**63 - 1, -(2**63)]),
                      "partitions": entries}
            if rng.random() < 0.2:
                fields["timeout_ms"] = self.any_int()
            if rng.random() < 0.15:  # mismatched frame counts
                payloads = payloads[:-1] if payloads and rng.random() < 0.5 \
                    else [*payloads, self.invalid_batch()]
        elif api == "fetch":
            fields = {"partitions": [
                [self.readable_topic(), rng.choice([0, 1, 2, -1, 2**63 - 1]),
                 rng.choice([0, 0, 1, 5, -1, -(2**63), 2**63 - 1, rng.randrange(200)]),
                 rng.choice([1 << 20, 0, 1, -1, 100, 2**63 - 1, -(2**63)])]
                for _ in range(rng.randrange(4))]}
            # long waits park the request (served or expired later, never awaited here)
            fields["max_wait_ms"] = rng.choice([0, 0, 0, 1, 10, 50, -1, -(2**63)]
                                               if rng.random() < 0.97
                                               else [2**63 - 1, 60_001, 10**9, 5_000])
            if rng.random() < 0.7:
                fields["min_bytes"] = rng.choice([0, 1, -1, 1 << 20, 2**63 - 1, -(2**63)])
            if rng.random() < 0.7:
                fields["max_bytes"] = rng.choice([0, 1, -1, 1 << 20, 2**63 - 1, -(2**63)])
        elif api == "list_offsets":
            fields = {"partitions": [[self.readable_topic(), rng.choice([0, 1, -1, 2**63 - 1]),
                                      rng.choice([-1, -2, -3, 0, 1_700_000_000_000,
                                                  2**63 - 1, -(2**63)])]
                                     for _ in range(rng.randrange(4))]}
        elif api == "join_group":
            fields = {"group_id": rng.choice(["g1", "g2", "", "x" * 300]),
                      "topics": [self.readable_topic() for _ in range(rng.randrange(3))]}
            if rng.random() < 0.5:
                fields["member_id"] = rng.choice([None, "", "member-nope"])
            if rng.random() < 0.5:
                fields["session_timeout_ms"] = rng.choice([6000, 0, -1, 2**63 - 1, 10_000])
            if rng.random() < 0.5:
                fields["assignor"] = rng.choice(["range", "roundrobin", "cooperative-sticky",
                                                 "sticky", ""])
            if rng.random() < 0.3:
                fields["client_id"] = rng.choice(["", "fuzz", "x" * 1000])
        elif api == "heartbeat":
            fields = {"group_id": rng.choice(["g1", "g2", ""]),
                      "member_id": rng.choice(["", "member-nope"]),
                      "generation_id": self.any_int(),
                      "owned": [[self.readable_topic(), self.any_int()]
                                for _ in range(rng.randrange(3))]}
        elif api == "leave_group":
            fields = {"group_id": rng.choice(["g1", "g2", ""]),
                      "member_id": rng.choice(["", "member-nope"])}
        elif api == "offset_commit":
            fields = {"group_id": rng.choice(["g1", "g2", "", "fuzz-group"]),
                      # never empty: see test_an_offset_commit_without_offsets_...
                      "offsets": [[self.readable_topic(), self.any_int(), self.any_int(),
                                   rng.choice(["", "meta", "x" * 2000])]
                                  for _ in range(rng.randrange(1, 3))]}
            if rng.random() < 0.5:
                fields["member_id"] = rng.choice([None, "", "member-nope"])
            if rng.random() < 0.5:
                fields["generation_id"] = self.any_int()
        elif api == "offset_fetch":
            fields = {"group_id": rng.choice(["g1", "fuzz-group", ""])}
            if rng.random() < 0.5:
                fields["partitions"] = rng.choice([None, [[self.readable_topic(),
                                                           self.any_int()]]])
        elif api == "describe_groups":
            fields = {"groups": [rng.choice(["g1", "g2", "", "nope"])
                                 for _ in range(rng.randrange(3))]}
        else:  # init_producer_id, list_groups, status and any API added later
            fields = {}
        return fields, payloads

    # --- mutations ----------------------------------------------------------------------

    def mutate_fields(self, api: str, fields: dict[str, Any]) -> None:
        rng = self.rng
        schema = protocol.SCHEMAS.get(api, {})
        kind = rng.randrange(6)
        names = list(schema)
        if kind == 0 and names:  # a field of the wrong type
            fields[rng.choice(names)] = self.wrong()
        elif kind == 1 and fields:  # a field missing (required or not)
            del fields[rng.choice(list(fields))]
        elif kind == 2:  # an unknown field
            fields[rng.choice(["bogus", "Acks", "error", "message", "topics ", ""])] = self.wrong()
        elif kind == 3:  # a list field's element of the wrong shape
            lists = [n for n, v in fields.items() if isinstance(v, list)]
            if lists:
                name = rng.choice(lists)
                fields[name] = [*fields[name], self.wrong()]
        elif kind == 4:  # a list element's item of the wrong type
            lists = [n for n, v in fields.items() if isinstance(v, list) and v
                     and isinstance(v[0], list) and v[0]]
            if lists:
                name = rng.choice(lists)
                item = list(fields[name][0])
                item[rng.randrange(len(item))] = self.wrong()
                fields[name] = [item, *fields[name][1:]]
        else:  # every int field huge or negative
            for name, value in list(fields.items()):
                if isinstance(value, int) and not isinstance(value, bool):
                    fields[name] = rng.choice(HUGE_INTS)

    # --- whole messages ---------------------------------------------------------------

    def message(self) -> list[bytes]:
        rng = self.rng
        r = rng.random()
        if r < 0.03:
            return [b""] * rng.choice([1, 1, 2, 5])
        if r < 0.08:
            return [self.random_bytes() for _ in range(rng.randrange(1, 5))]
        if r < 0.13:
            return [_dumps(rng.choice(self.wrong_shapes())), *self.maybe_payloads()]
        if r < 0.20:
            return self.bad_envelope()
        if r < 0.23:
            return self.mangled_json()
        if r < 0.2305:  # a header over the size limit
            return [b"{" + b" " * protocol.MAX_HEADER_BYTES + b"}"]
        api = self.api()
        fields, payloads = self.fields_for(api)
        if rng.random() < 0.35:
            self.mutate_fields(api, fields)
        header = {"api": api, "v": protocol.VERSION, "id": self.request_id(), **fields}
        if api != "produce" and rng.random() < 0.05:
            payloads = self.maybe_payloads()  # frames an API does not expect
        return [_dumps(header), *payloads]

    def api(self) -> str:
        """Produce and fetch get most of the traffic; every API gets some."""
        r = self.rng.random()
        if r < 0.3:
            return "produce"
        if r < 0.45:
            return "fetch"
        return self.rng.choice(self.apis)

    def wrong_shapes(self) -> list[Any]:
        return [None, 0, -1, 2**63, 1.5, "produce", [], [1, 2], ["produce", 1, 1], {},
                {"api": "status"}, {"id": 1}, {"v": 1}, {"api": "status", "v": 1},
                {"api": None, "v": None, "id": None}, [{"api": "status", "v": 1, "id": 1}]]

    def maybe_payloads(self) -> list[bytes]:
        return [self.random_bytes() for _ in range(self.rng.choice([0, 0, 1, 3]))]

    def bad_envelope(self) -> list[bytes]:
        rng = self.rng
        header: dict[str, Any] = {"api": rng.choice([*self.apis, "nope", "PRODUCE", " fetch",
                                                    "__init__", "_reply", "", None, 1, []]),
                                  "v": rng.choice([protocol.VERSION, 0, 2, -1, "1", None, 1.5,
                                                   2**63, [1]]),
                                  "id": rng.choice([self.request_id(), -1, 0, 2**63 - 1,
                                                    -(2**63), 2**63, 2**64, "1", 1.5, None,
                                                    True, [], {}])}
        if isinstance(header["id"], int) and not isinstance(header["id"], bool):
            self.ids.add(header["id"])
        for key in list(header):
            if rng.random() < 0.15:
                del header[key]
        if rng.random() < 0.3:
            header.update(self.fields_for(rng.choice(self.apis))[0])
        return [_dumps(header), *self.maybe_payloads()]

    def mangled_json(self) -> list[bytes]:
        rng = self.rng
        text = _dumps({"api": "fetch", "v": 1, "id": self.request_id(),
                       "partitions": [[self.known_topic, 0, 0, 1 << 20]], "max_wait_ms": 0})
        choice = rng.randrange(6)
        if choice == 0:
            return [text[:rng.randrange(len(text))]]
        if choice == 1:
            return [text + b"garbage"]
        if choice == 2:
            return [b"\xff\xfe" + text]
        if choice == 3:
            return [b"[" * 2000 + b"]" * 2000]
        if choice == 4:
            return [b'{"api": "status", "v": 1, "id": 1, "x": "\\ud800"}']
        return [text.replace(b'"id"', b'"id", "id"')]


class Wire:
    """One DEALER to the appliance, read while writing so nothing backs up."""

    def __init__(self, bootstrap: str, rcvhwm: int = 0):
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, rcvhwm)  # 0: never make the server wait on us
        self.socket.connect(f"tcp://{bootstrap}")
        self.next_id = 1

    def send(self, frames: list[bytes], deadline: float,
             on_reply: Callable[[list[bytes]], None]) -> bool:
        while True:
            try:
                self.socket.send_multipart(frames, flags=zmq.NOBLOCK)
                return True
            except zmq.Again:
                if time.monotonic() > deadline:
                    return False
                self.socket.poll(20, zmq.POLLIN | zmq.POLLOUT)
                self.drain(on_reply)

    def drain(self, on_reply: Callable[[list[bytes]], None], wait_ms: int = 0) -> int:
        count = 0
        while self.socket.poll(wait_ms if count == 0 else 0, zmq.POLLIN):
            on_reply(self.socket.recv_multipart())
            count += 1
        return count

    def call(self, api: str, fields: dict[str, Any] | None = None,
             timeout_s: float = 10.0) -> protocol.Response:
        """One request and its reply, skipping stray replies to earlier requests."""
        self.next_id += 1
        request_id = -self.next_id  # negative ids: never one of the fuzz's
        self.socket.send_multipart(protocol.encode_request(api, request_id, fields))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if self.socket.poll(int(left * 1000) + 1, zmq.POLLIN):
                response = protocol.parse_response(self.socket.recv_multipart())
                if response.id == request_id:
                    return response
        raise AssertionError(f"no reply to {api} in {timeout_s}s")

    def close(self) -> None:
        self.socket.close()


class ReplyChecker:
    """Every reply must parse, carry an id we sent, and name only Kafka errors."""

    def __init__(self, ids: set[int], seed: int):
        self.ids = ids
        self.seed = seed
        self.count = 0
        self.errors: Counter[str] = Counter()
        self.problems: list[str] = []
        self.server_errors: list[str] = []
        self.known_bugs: Counter[str] = Counter()
        self.sent = 0

    def __call__(self, frames: list[bytes]) -> None:
        self.count += 1
        try:
            response = protocol.parse_response(frames)
        except Exception as exc:  # any failure to parse is the finding
            self.problems.append(f"unparsable reply {frames[:2]!r}: {exc!r}")
            return
        if response.id != protocol.NO_ID and response.id not in self.ids:
            self.problems.append(f"reply to an id never sent: {response.id}")
        if response.error is not None:
            self.errors[response.error] += 1
            if not _known_error(response.error):
                self.problems.append(f"unknown error name {response.error!r}")
            if response.error == UnknownServerError.name:
                self.server_error(f"{response.api}: {response.message}")
        else:
            self.errors["(none)"] += 1
        for name in _error_names(response.fields):
            if name is not None:
                self.errors[f"entry {name}"] += 1
            if name is not None and not _known_error(name):
                self.problems.append(f"unknown per-partition error {name!r} in {response.api}")
            elif name == UnknownServerError.name:
                self.server_error(f"{response.api}: {response.fields}")

    def server_error(self, text: str) -> None:
        if any(known in text for known in KNOWN_SERVER_BUGS):
            self.known_bugs[text[:120]] += 1
        else:
            self.server_errors.append(text)


# --- checks after the fuzz ------------------------------------------------------------------

def produce_known(bootstrap: str, topic: str, count: int, seed: int) -> list[tuple]:
    """Records acknowledged with acks=all: (partition, offset, key, value, headers)."""
    rng = random.Random(seed)
    with Producer(bootstrap, acks="all", linger_ms=2) as producer:
        futures = []
        for i in range(count):
            key = b"k%d" % (i % 11)
            value = rng.randbytes(rng.randrange(1, 300))
            headers = ((("n", b"%d" % i),) if i % 3 else ())
            futures.append((key, value, headers,
                            producer.send(topic, value=value, key=key, headers=list(headers))))
        acked = []
        for key, value, headers, future in futures:
            md = future.result(timeout=20)
            acked.append((md.partition, md.offset, key, value, headers))
    return acked


def read_back(bootstrap: str, topic: str, partitions: int, expected: int,
              timeout_s: float = 15) -> list[tuple]:
    consumer = Consumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        consumer.assign([(topic, p) for p in range(partitions)])
        for p in range(partitions):
            consumer.seek(topic, p, 0)
        got: list[tuple] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            got += [(m.partition, m.offset, m.key, m.value, tuple(m.headers))
                    for m in consumer.poll(timeout_ms=500)]
        got += [(m.partition, m.offset, m.key, m.value, tuple(m.headers))
                for m in consumer.poll(timeout_ms=200)]  # nothing more may follow
    finally:
        consumer.close()
    return sorted(got)


def decode_every_partition(wire: Wire, seed: int) -> dict[tuple[str, int], int]:
    """Fetch each partition of each topic from its log start to its high watermark
    and decode every batch: offsets must be contiguous and every record readable."""
    records: dict[tuple[str, int], int] = {}
    described = wire.call("describe_topics", {"topics": None})
    assert described.error is None, described
    for topic in described.fields["topics"]:
        assert topic["error"] is None, (seed, topic)
        for entry in topic["partitions"]:
            name, p = topic["name"], entry["partition"]
            deadline = time.monotonic() + 10
            while entry.get("error") is not None and time.monotonic() < deadline:
                time.sleep(0.1)  # just created: its worker is opening it
                again = wire.call("describe_topics", {"topics": [name]}).fields["topics"][0]
                entry = again["partitions"][p]
            assert entry.get("error") is None, (seed, name, entry)
            offset, high_watermark = entry["log_start_offset"], entry["high_watermark"]
            count = 0
            while offset < high_watermark:
                response = wire.call("fetch", {"partitions": [[name, p, offset, 1 << 20]],
                                               "max_wait_ms": 0})
                part = response.fields["partitions"][0]
                assert part["error"] is None, (seed, name, p, offset, part)
                assert part["records"] is not None, (seed, name, p, offset, "no data below hw")
                data = response.payloads[part["records"]]
                decoded = 0
                for batch in iter_batches(data):  # raises CorruptRecordError on bad data
                    header = batch.header
                    assert header.base_offset == offset, (seed, name, p, header, offset)
                    assert len(batch.records) == header.record_count, (seed, name, p, header)
                    assert [r.offset for r in batch.records] == list(
                        range(offset, offset + header.record_count)), (seed, name, p, offset)
                    offset = header.next_offset
                    count += header.record_count
                    decoded += 1
                assert decoded, (seed, name, p, offset, "a fetch returned no whole batch")
            records[(name, p)] = count
    return records


def run_fuzz(appliance: Appliance, seed: int, apis: list[str]) -> ReplyChecker:
    rng = random.Random(seed)
    generator = Generator(rng, KNOWN_TOPIC, apis)
    checker = ReplyChecker(generator.ids, seed)
    wire = Wire(appliance.bootstrap)
    sent = 0
    deadline = time.monotonic() + FUZZ_BUDGET_S
    try:
        while sent < MESSAGES and time.monotonic() < deadline:
            if not wire.send(generator.message(), deadline, checker):
                break
            sent += 1
            wire.drain(checker)
            if sent % 200 == 0:  # let the appliance catch up now and then
                wire.drain(checker, wait_ms=5)
        # what is still coming: quiet for half a second ends it
        quiet_deadline = time.monotonic() + 10
        while time.monotonic() < quiet_deadline and wire.drain(checker, wait_ms=500):
            pass
    finally:
        wire.close()
    checker.sent = sent
    return checker


# --- the tests ---------------------------------------------------------------------------------

def test_fuzzed_requests_get_error_replies_and_change_nothing(tmp_path):
    seed = fuzz_seed("RINGLOG_FUZZ_SEED", "fuzz")
    appliance = start_appliance(tmp_path)
    try:
        with replayable(appliance, "fuzz", seed):
            _fuzz_and_check(appliance, seed)
    finally:
        if appliance.process.poll() is None:
            appliance.stop()


def _fuzz_and_check(appliance: Appliance, seed: int) -> None:
    wire = Wire(appliance.bootstrap)
    created = wire.call("create_topics", {"topics": [
        {"name": KNOWN_TOPIC, "partitions": KNOWN_PARTITIONS}]})
    assert created.fields["topics"][0]["error"] is None, created
    wire.close()
    acked = produce_known(appliance.bootstrap, KNOWN_TOPIC, KNOWN_RECORDS, seed)
    supervisor_pid = appliance.process.pid
    workers_before = sorted(appliance.worker_pids())
    assert len(workers_before) == 2

    started = time.monotonic()
    checker = run_fuzz(appliance, seed, sorted(protocol.SCHEMAS))
    elapsed = time.monotonic() - started
    print(f"fuzz: {checker.sent} messages in {elapsed:.1f}s, {checker.count} replies; "
          f"errors: {dict(checker.errors.most_common())}")
    assert checker.sent >= 10_000, f"seed {seed}: only {checker.sent} messages in the budget"
    assert not checker.problems, f"seed {seed}: {checker.problems[:20]}"
    assert checker.count > checker.sent // 2, f"seed {seed}: too few replies ({checker.count})"
    assert checker.errors["(none)"] > 100, f"seed {seed}: hardly anything valid got through"
    assert not checker.server_errors, (
        f"seed {seed}: UNKNOWN_SERVER_ERROR (a server bug): {checker.server_errors[:10]}")
    if checker.known_bugs:
        print(f"known server bugs hit: {dict(checker.known_bugs)}")

    # every process is alive, and the same one
    assert appliance.process.poll() is None, f"seed {seed}: the supervisor died"
    assert sorted(appliance.worker_pids()) == workers_before, f"seed {seed}: a worker died"
    assert appliance.process.pid == supervisor_pid

    wire = Wire(appliance.bootstrap)
    try:
        status = wire.call("status")
        assert status.error is None and status.fields["workers"] == [0, 1], status

        # the acknowledged records, exactly, and nothing else in their topic
        assert read_back(appliance.bootstrap, KNOWN_TOPIC, KNOWN_PARTITIONS,
                         len(acked)) == sorted(acked), f"seed {seed}: the known records changed"

        # a fresh round trip
        fresh = produce_known(appliance.bootstrap, "fuzz-after", 40, seed + 1)
        assert read_back(appliance.bootstrap, "fuzz-after", 1, len(fresh)) == sorted(fresh)

        # no corrupt batch got into any log
        counts = decode_every_partition(wire, seed)
        known = sum(n for (t, _), n in counts.items() if t == KNOWN_TOPIC)
        assert known == KNOWN_RECORDS, f"seed {seed}: {known} records in {KNOWN_TOPIC}"
        print(f"decoded {sum(counts.values())} records in {len(counts)} partitions")
    finally:
        wire.close()

    assert appliance.stop() == 0, f"seed {seed}: {appliance.stderr()[-2000:]}"


def _entry_errors(reply: protocol.Response) -> list:
    entries = reply.fields.get("partitions") or reply.fields.get("topics") or []
    return [e.get("error") for e in entries]


def test_each_kind_of_bad_input_gets_its_own_error(appliance):
    """The fuzz only checks that errors are Kafka names; here, which name for what."""
    good = encode_batch([Record(value=b"v")])
    flipped = bytearray(good)
    flipped[-1] ^= 0x01
    produce = {"acks": -1, "partitions": [["bad-input", 0]]}
    cases: list[tuple[list[bytes], str | None, list]] = [
        ([b""], "INVALID_REQUEST", []),
        ([b"\x00\xff garbage"], "INVALID_REQUEST", []),
        ([b"[1, 2, 3]"], "INVALID_REQUEST", []),
        ([b'{"api": "status", "v": 1}'], "INVALID_REQUEST", []),
        ([b'{"api": "nope", "v": 1, "id": 5}'], "UNSUPPORTED_VERSION", []),
        ([b'{"api": "status", "v": 2, "id": 5}'], "UNSUPPORTED_VERSION", []),
        ([_dumps({"api": "status", "v": 1, "id": 5, "bogus": 1})], "INVALID_REQUEST", []),
        ([_dumps({"api": "fetch", "v": 1, "id": 5})], "INVALID_REQUEST", []),
        ([_dumps({"api": "fetch", "v": 1, "id": 5, "partitions": [["t", "0", 0, 1]]})],
         "INVALID_REQUEST", []),
        ([_dumps({"api": "fetch", "v": 1, "id": 5, "partitions": [["t", 2**64, 0, 1]]})],
         "INVALID_REQUEST", []),
        (protocol.encode_request("produce", 5, {**produce, "acks": 2}, [good]),
         "INVALID_REQUIRED_ACKS", []),
        (protocol.encode_request("produce", 5, {**produce, "acks": -2}, [good]),
         "INVALID_REQUIRED_ACKS", []),
        (protocol.encode_request("produce", 5, produce, [good, good]), "INVALID_REQUEST", []),
        (protocol.encode_request("produce", 5, produce, []), "INVALID_REQUEST", []),
        (protocol.encode_request("produce", 5, produce, [good[:40]]), None, ["CORRUPT_MESSAGE"]),
        (protocol.encode_request("produce", 5, produce, [bytes(flipped)]), None,
         ["CORRUPT_MESSAGE"]),
        (protocol.encode_request("produce", 5, produce, [b""]), None, ["CORRUPT_MESSAGE"]),
        (protocol.encode_request("produce", 5, {**produce, "partitions": [["a b", 0]]}, [good]),
         None, ["INVALID_TOPIC_EXCEPTION"]),
        (protocol.encode_request("produce", 5, {**produce, "partitions": [["x" * 250, 0]]},
                                 [good]), None, ["INVALID_TOPIC_EXCEPTION"]),
        (protocol.encode_request("produce", 5, {**produce, "partitions": [["bad-input", -1]]},
                                 [good]), None, ["UNKNOWN_TOPIC_OR_PARTITION"]),
        (protocol.encode_request("produce", 5, {**produce,
                                                "partitions": [["__consumer_offsets", 0]]},
                                 [good]), None, ["INVALID_REQUEST"]),
        (protocol.encode_request("produce", 5, produce,
                                 [encode_batch([Record(value=bytes(1_100_000))])]),
         None, ["MESSAGE_TOO_LARGE"]),
        (protocol.encode_request("fetch", 5, {"partitions": [["bad-input", 0, -1, 100],
                                                              ["bad-input", 0, 2**63 - 1, 100],
                                                              ["nope", 0, 0, 100]],
                                              "max_wait_ms": 2**63 - 1}),
         None, ["OFFSET_OUT_OF_RANGE", "OFFSET_OUT_OF_RANGE", "UNKNOWN_TOPIC_OR_PARTITION"]),
        (protocol.encode_request("create_topics", 5, {"topics": [
            {"name": f"p{n}", "partitions": n} for n in (0, -1, 10**9, 2**63 - 1)]}),
         None, ["INVALID_PARTITIONS"] * 4),
        (protocol.encode_request("create_topics", 5, {"topics": [
            {"name": "rf", "replication_factor": 2}, {"name": "cfg", "configs": {"x": "1"}},
            {"name": "..", "partitions": 1}]}),
         None, ["INVALID_REPLICATION_FACTOR", "INVALID_CONFIG", "INVALID_TOPIC_EXCEPTION"]),
    ]
    wire = Wire(appliance.bootstrap)
    try:
        # the topic exists and holds one record before the bad input starts
        first = protocol.parse_response(_call_raw(wire, protocol.encode_request(
            "produce", 1, produce, [good])))
        assert _entry_errors(first) == [None], first
        for frames, error, entry_errors in cases:
            reply = protocol.parse_response(_call_raw(wire, frames))
            assert (reply.error, _entry_errors(reply)) == (error, entry_errors), (
                frames[0][:120], reply)
        listed = wire.call("list_offsets", {"partitions": [["bad-input", 0, -1]]})
        assert listed.fields["partitions"][0]["offset"] == 1  # nothing else got in
        names = [t["name"] for t in wire.call("metadata", {"topics": None}).fields["topics"]]
        assert sorted(names) == ["__consumer_offsets", "bad-input"], names
    finally:
        wire.close()


# --- findings kept as tests (each names the bug it shows) ------------------------------------

def test_a_client_that_never_reads_its_replies_does_not_stall_the_appliance(tmp_path):
    appliance = start_appliance(tmp_path)
    stalled = Wire(appliance.bootstrap, rcvhwm=1)
    wire = Wire(appliance.bootstrap)
    try:
        big = encode_batch([Record(value=b"x" * 100_000)])
        reply = protocol.parse_response(_call_raw(wire, protocol.encode_request(
            "produce", 1, {"acks": -1, "partitions": [["big", 0]]}, [big])))
        assert reply.fields["partitions"][0]["error"] is None, reply
        fetch = {"partitions": [["big", 0, 0, 1 << 20]], "max_wait_ms": 0}
        for i in range(2_000):  # ~200 MB of replies this client never reads
            stalled.socket.send_multipart(protocol.encode_request("fetch", i, fetch))
        time.sleep(1)
        status = wire.call("status", timeout_s=5)  # raises AssertionError when stalled
        assert status.error is None
    finally:
        stalled.close()
        wire.close()
        if appliance.process.poll() is None:
            os.killpg(appliance.process.pid, signal.SIGKILL)  # a stalled one ignores SIGTERM
        appliance.process.wait(10)


def _call_raw(wire: Wire, frames: list[bytes]) -> list[bytes]:
    wire.socket.send_multipart(frames)
    assert wire.socket.poll(10_000), "no reply"
    return wire.socket.recv_multipart()


def test_an_offset_commit_without_offsets_is_answered_without_a_server_error(appliance):
    wire = Wire(appliance.bootstrap)
    replies = []

    def answered() -> bool:
        """Retriable while the offsets partition loads after start (a busy
        machine takes its time), as any client retries it."""
        replies.append(wire.call("offset_commit", {"group_id": "g", "offsets": []}))
        return replies[-1].error != "COORDINATOR_LOAD_IN_PROGRESS"

    try:
        wait_for(answered, 30, "an answer once the committed offsets are loaded")
        assert replies[-1].error in (None, "INVALID_REQUEST"), (replies[-1].error,
                                                               replies[-1].message)
    finally:
        wire.close()


def test_describe_topics_during_a_worker_restart_answers_per_partition(appliance):
    wire = Wire(appliance.bootstrap)
    try:
        created = wire.call("create_topics", {"topics": [{"name": "r", "partitions": 2}]})
        assert created.fields["topics"][0]["error"] is None
        deadline = time.monotonic() + 10
        while wire.call("describe_topics", {"topics": ["r"]}).fields["topics"][0][
                "partitions"][0].get("error") is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        victim = appliance.worker_pids()[0]
        os.kill(victim, signal.SIGTERM)  # it closes its logs, the supervisor respawns it
        seen = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reply = wire.call("describe_topics", {"topics": ["r"]})
            assert reply.error is None, (reply.error, reply.message)
            errors = [p.get("error") for p in reply.fields["topics"][0]["partitions"]]
            seen.update(errors)
            if victim not in appliance.worker_pids() and errors == [None, None] and len(seen) > 1:
                break
            time.sleep(0.02)
    finally:
        wire.close()


def test_a_deleted_and_recreated_topic_stays_writable_and_no_worker_dies(appliance):
    wire = Wire(appliance.bootstrap)
    batch = encode_batch([Record(value=b"v")])
    workers = sorted(appliance.worker_pids())
    try:
        assert wire.call("create_topics", {"topics": [{"name": "a", "partitions": 2}]}
                         ).fields["topics"][0]["error"] is None
        for i in range(40):
            assert wire.call("delete_topics", {"topics": ["a"]}).fields["topics"][0][
                "error"] is None
            if i % 2:  # shifts the least-loaded worker, so the owners of "a" change
                wire.call("create_topics", {"topics": [{"name": f"b{i}", "partitions": 1}]})
            deadline = time.monotonic() + 3
            while True:  # as in Kafka, the name is free again once deletion completes
                created = wire.call("create_topics", {"topics": [{"name": "a", "partitions": 2}]})
                error = created.fields["topics"][0]["error"]
                if error is None:
                    break
                assert error == "TOPIC_ALREADY_EXISTS", created.fields
                assert time.monotonic() < deadline, f"round {i}: deletion never completed"
                time.sleep(0.01)
            deadline = time.monotonic() + 3
            while True:
                reply = protocol.parse_response(_call_raw(wire, protocol.encode_request(
                    "produce", i, {"acks": -1, "partitions": [["a", 0], ["a", 1]]},
                    [batch, batch])))
                errors = [p["error"] for p in reply.fields["partitions"]]
                if errors == [None, None]:
                    break
                assert time.monotonic() < deadline, f"round {i}: produce still fails: {errors}"
                time.sleep(0.05)
            assert sorted(appliance.worker_pids()) == workers, f"round {i}: a worker died"
    finally:
        wire.close()
    assert "could not open" not in appliance.stderr()


def test_join_group_with_an_empty_topic_name_is_an_invalid_request(appliance):
    wire = Wire(appliance.bootstrap)
    try:
        reply = wire.call("join_group", {"group_id": "g", "topics": [""]})
        assert reply.error in ("INVALID_REQUEST", "INVALID_TOPIC_EXCEPTION"), (
            reply.error, reply.message)
    finally:
        wire.close()


def test_a_partition_being_created_is_not_available_rather_than_a_server_error(appliance):
    wire = Wire(appliance.bootstrap)
    seen: Counter[str] = Counter()
    try:
        for i in range(150):
            wire.socket.send_multipart(protocol.encode_request(
                "create_topics", 100 * i, {"topics": [{"name": f"new-{i}"}]}))
            for j in range(1, 30):  # asked while its worker opens it
                wire.socket.send_multipart(protocol.encode_request(
                    "list_offsets", 100 * i + j, {"partitions": [[f"new-{i}", 0, -1]]}))
            for _ in range(30):
                assert wire.socket.poll(10_000), "no reply"
                reply = protocol.parse_response(wire.socket.recv_multipart())
                seen[reply.error or "(none)"] += 1
                for entry in reply.fields.get("partitions", []):
                    seen[f"entry {entry['error']}"] += 1
    finally:
        wire.close()
    assert "UNKNOWN_SERVER_ERROR" not in seen, dict(seen)


def test_a_retried_multi_batch_record_set_of_an_idempotent_producer_is_not_stored_twice(
        appliance):
    wire = Wire(appliance.bootstrap)
    try:
        producer_id = wire.call("init_producer_id").fields["producer_id"]

        def batch(sequence: int) -> bytes:
            return encode_batch([Record(value=b"v%d" % sequence)], producer_id=producer_id,
                                producer_epoch=0, base_sequence=sequence)

        for record_set in (batch(0), batch(1) + batch(2), batch(1) + batch(2)):  # a retry
            _call_raw(wire, protocol.encode_request(
                "produce", 1, {"acks": -1, "partitions": [["idem", 0]]}, [record_set]))
        fetched = wire.call("fetch", {"partitions": [["idem", 0, 0, 1 << 20]],
                                      "max_wait_ms": 0})
        values = [r.value for b in iter_batches(fetched.payloads[0]) for r in b.records]
        assert len(values) == len(set(values)), values
    finally:
        wire.close()
