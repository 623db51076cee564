"""Bad input on the Kafka port of a real appliance: over 100,000 malformed
inputs in bounded time, then nothing lost, nothing corrupted, every process
alive and a well-formed Kafka client served as before.

The inputs are real requests written with kio's writers (every API the door
serves, several versions, Produce with real record batches of every codec,
and Produce v0-2, written by hand, which the door refuses)
mutated by byte flips, overwrites, insertions, deletions and truncations;
random bytes; frames cut short; size prefixes negative or over
socket.request.max.bytes; API keys and versions outside the table.

Kafka closes a connection on a frame it cannot read, so pipelining blindly
would waste every frame after the first bad one. Each mutated frame is
therefore first judged by the door itself, sans I/O, in this process
(KafkaDoor.decode): a connection carries a run of frames the door can read
(the broker answers them, with errors mostly) and ends with one it cannot
(the broker closes the connection there). Every input counted was read by
the broker. Several connections run side by side.

Afterwards: the supervisor and the same workers are alive and ready; the
records produced before the storm read back byte for byte, at their
offsets, through kafka-python on the Kafka port; every partition of every
topic reads back through the native door as whole, CRC-valid, contiguous
batches (anything a mutated produce got in is valid); the appliance log has
no traceback; SIGTERM stops it with 0.

The seed is random per run and printed; RINGLOG_KAFKA_FUZZ_SEED=<n> replays one.
"""

from __future__ import annotations

import errno
import itertools
import random
import re
import selectors
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition

from appliance.broker import requests as q
from appliance.client import Admin, Producer
from appliance.config import default_config
from appliance.kafka import apis as k
from appliance.kafka.apis import APIS
from appliance.kafka.codec import KafkaDoor, MalformedRequest
from loadtest.harness import Appliance
from shm.records import Record, encode_batch
from tests.integration.conftest import start_appliance
from tests.integration.test_fuzz import Wire, decode_every_partition
from tests.polling import wait_for
from tests.seeded import fuzz_seed, replayable
from tests.unit.appliance.kafka.test_codec import legacy_produce_frame, request_frame

INPUTS = 100_000
STORM_BUDGET_S = 60.0  # the sending phase stops here even if INPUTS are not all out
CONNECTIONS = 16  # side by side
PARKS_MS = 200  # a fetch that may wait longer is not waited for (see Inputs.connection)
RUN = (5, 60)  # readable frames before a connection's last, unreadable one (< MAX_IN_FLIGHT)
STUCK_S = 5.0  # a connection the broker neither answers nor closes for this long is dropped
KNOWN_TOPIC, OTHER_TOPIC, PARTITIONS, KNOWN_RECORDS = "storm-known", "storm-other", 2, 120
MAX_REQUEST = int(default_config()["socket.request.max.bytes"])
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
SIZE = struct.Struct(">i")


# --- real requests, written with kio -----------------------------------------------------------

def batches(rng: random.Random) -> list[bytes]:
    out = []
    for i in range(24):
        records = [Record(value=rng.randbytes(rng.randrange(0, 120)),
                          key=rng.choice([None, b"k%d" % i]),
                          headers=(("h", b"v"),) if i % 3 == 0 else ())
                   for _ in range(rng.choice([1, 1, 2, 5]))]
        out.append(encode_batch(records, compression=CODECS[i % len(CODECS)],
                                producer_id=rng.choice([-1, -1, 7]),
                                base_sequence=rng.choice([-1, 0])))
    return out


def templates(rng: random.Random) -> list[bytes]:
    """Well-formed request frames (no size prefix) of every API the door
    serves, at several versions, aimed at the storm's topics. No CreateTopics
    (a flipped partition count could ask for 100,000 partitions) and nothing
    that names the known topic in a request that changes configs or groups."""
    records = batches(rng)
    topics = [KNOWN_TOPIC, OTHER_TOPIC]
    out: list[bytes] = []

    def add(api_key: int, values: dict, versions: range | None = None) -> None:
        api = APIS[api_key]
        for version in versions or range(api.min_version, api.max_version + 1):
            if api.serves(version):
                out.append(request_frame(api_key, version, values,
                                         correlation_id=rng.randrange(2**31)))

    for _ in range(6):
        add(k.PRODUCE, {"transactional_id": None, "acks": rng.choice([-1, 1, 0]),
                        "timeout": 5000, "topic_data": [
                            {"name": topic, "partition_data": [
                                {"index": p, "records": b"".join(
                                    rng.sample(records, rng.choice([1, 1, 2])))}
                                for p in range(PARTITIONS)]} for topic in topics]})
    add(k.FETCH, {"replica_id": -1, "max_wait": 0, "min_bytes": 1, "max_bytes": 65536,
                  "isolation_level": 0, "session_id": 0, "session_epoch": -1,
                  "forgotten_topics_data": [], "rack_id": "", "topics": [
                      {"topic": topic, "partitions": [
                          {"partition": p, "current_leader_epoch": -1, "fetch_offset": 0,
                           "log_start_offset": -1, "partition_max_bytes": 2048}
                          for p in range(PARTITIONS)]} for topic in topics]})
    add(k.LIST_OFFSETS, {"replica_id": -1, "isolation_level": 0, "topics": [
        {"name": KNOWN_TOPIC, "partitions": [
            {"partition_index": p, "current_leader_epoch": -1, "timestamp": ts}
            for p, ts in ((0, -1), (1, -2))]}]})
    add(k.METADATA, {"topics": [{"name": t} for t in topics],
                     "allow_auto_topic_creation": False,
                     "include_cluster_authorized_operations": False,
                     "include_topic_authorized_operations": False})
    add(k.FIND_COORDINATOR, {"key": "storm-group", "key_type": 0})
    add(k.INIT_PRODUCER_ID, {"transactional_id": None, "transaction_timeout": 60_000})
    add(k.OFFSET_COMMIT, {"group_id": "storm-group", "generation_id_or_member_epoch": -1,
                          "member_id": "", "retention_time": -1, "group_instance_id": None,
                          "topics": [{"name": OTHER_TOPIC, "partitions": [
                              {"partition_index": 0, "committed_offset": 3,
                               "committed_leader_epoch": -1, "committed_metadata": "m"}]}]})
    add(k.OFFSET_FETCH, {"group_id": "storm-group",
                         "topics": [{"name": OTHER_TOPIC, "partition_indexes": [0, 1]}]})
    add(k.OFFSET_FOR_LEADER_EPOCH, {"replica_id": -1, "topics": [
        {"topic": KNOWN_TOPIC, "partitions": [
            {"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0}]}]})
    add(k.DESCRIBE_CONFIGS, {"include_synonyms": False, "resources": [
        {"resource_type": 2, "resource_name": KNOWN_TOPIC, "configuration_keys": None},
        {"resource_type": 4, "resource_name": "0", "configuration_keys": ["broker.id"]}]})
    add(k.ALTER_CONFIGS, {"validate_only": False, "resources": [
        {"resource_type": 2, "resource_name": "storm-nope",
         "configs": [{"name": "retention.ms", "value": "1000"}]}]})
    add(k.INCREMENTAL_ALTER_CONFIGS, {"validate_only": False, "resources": [
        {"resource_type": 2, "resource_name": "storm-nope", "configs": [
            {"name": "retention.ms", "config_operation": 0, "value": "1000"},
            {"name": "segment.ms", "config_operation": 1, "value": None}]}]})
    add(k.DELETE_TOPICS, {"topic_names": ["storm-nope"], "timeout": 1000})
    add(k.LIST_GROUPS, {})
    add(k.DESCRIBE_GROUPS, {"groups": ["storm-group", "storm-nope"],
                            "include_authorized_operations": False})
    add(k.DELETE_GROUPS, {"groups_names": ["storm-nope"]})
    add(k.JOIN_GROUP, {"group_id": "storm-join", "session_timeout": 6000,
                       "rebalance_timeout": 6000, "member_id": "", "group_instance_id": None,
                       "protocol_type": "consumer",
                       "protocols": [{"name": "range", "metadata": b"\x00\x01"}]},
        range(4, 6))  # v4+: an unknown member gets MEMBER_ID_REQUIRED at once, never parks
    add(k.SYNC_GROUP, {"group_id": "storm-nope", "generation_id": 1, "member_id": "m",
                       "group_instance_id": None, "assignments": []})
    add(k.HEARTBEAT, {"group_id": "storm-nope", "generation_id": 1, "member_id": "m",
                      "group_instance_id": None})
    add(k.LEAVE_GROUP, {"group_id": "storm-nope", "member_id": "m", "members": [
        {"member_id": "m", "group_instance_id": None}]})
    add(k.API_VERSIONS, {})
    out += [legacy_produce_frame(version, acks) for version in (0, 1, 2) for acks in (1, -1)]
    return out


# --- inputs: mutated, random, cut, oversized, unknown -------------------------------------------

def framed(body: bytes) -> bytes:
    return SIZE.pack(len(body)) + body


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 5])):
        position = rng.randrange(len(data)) if data else 0
        kind = rng.randrange(6)
        if kind == 0 and data:
            data[position] ^= 1 << rng.randrange(8)
        elif kind == 1 and data:
            data[position] = rng.choice([0x00, 0xFF, 0x7F, 0x80, 0x01, rng.randrange(256)])
        elif kind == 2:
            data[position:position] = rng.randbytes(rng.randint(1, 16))
        elif kind == 3:
            del data[position:position + rng.randint(1, 16)]
        elif kind == 4:
            del data[rng.randrange(len(data) + 1):]
        elif data:  # an int field's worth overwritten with an extreme value
            value = rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00",
                                b"\x00\x00\x00\x00", b"\xff\xff", b"\x7f\xff"])
            data[position:position + len(value)] = value
    return bytes(data)


UNKNOWN_KEYS = [key for key in range(-2, 80) if key not in APIS] + [1000, 32767, -32768]


def parks(core: q.Request) -> bool:
    """Whether the broker may rightly hold this request's answer past PARKS_MS:
    a fetch (a mutated max_wait can be days), or a JoinGroup that joins at once
    rather than being told MEMBER_ID_REQUIRED (a version mutated below v4, or a
    group.instance.id mutated out of null), which waits for the rebalance."""
    if isinstance(core, q.FetchRequest):
        return core.max_wait_ms > PARKS_MS
    if isinstance(core, q.ClassicJoinGroupRequest):
        return not core.member_id and (not core.require_known_member_id
                                       or core.group_instance_id is not None)
    return False


@dataclass
class Batch:
    """One connection's inputs."""

    readable: bytes  # frames the broker reads and answers (or not: acks=0), pipelined
    inputs: int  # how many inputs in all
    answered: list[int]  # correlation ids of the responses due, in order
    last: bytes  # once those are in: fetches that may park, then the unreadable input
    frames: dict[int, bytes]  # the frames answered, by correlation id


class Inputs:
    """The storm's inputs, reproducible from the seed, each judged by the door
    before it is sent: readable (the broker answers it, if it takes a response
    slot, and reads on) or not (the broker closes the connection)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.templates = templates(rng)
        self.door = KafkaDoor(default_config(), ("127.0.0.1", 9092))
        self.kinds: Counter[str] = Counter()

    def judge(self, frame: bytes) -> str | None:
        """Whether the door reads `frame` and how it answers: "answered" (a
        response slot taken), "silent" (acks=0: none), "parks" (may wait past
        PARKS_MS, see parks()); None: the door cannot read it."""
        taken: list[int] = []
        try:
            decoded = self.door.decode(0, frame, lambda: taken.append(0) or 0)
        except MalformedRequest:
            return None
        if any(parks(core) for _, core in decoded.calls):
            return "parks"
        return "answered" if taken else "silent"

    def connection(self) -> Batch:
        """One connection's inputs: readable mutated frames (and the correlation
        ids of those that get a response, in order), then what goes out once
        they are answered: the fetches that may park (they hold every later
        response, as in Kafka; the broker must drop them when it closes) and one
        unreadable input."""
        rng = self.rng
        readable: list[bytes] = []
        parked: list[bytes] = []
        answered: list[int] = []
        frames: dict[int, bytes] = {}  # by correlation id, to say what a stuck one waits for
        want = rng.randint(*RUN)
        tries = 0
        while len(readable) < want and tries < want * 4:
            tries += 1
            frame = mutate(rng, rng.choice(self.templates))
            verdict = self.judge(frame)
            if verdict is None:
                continue
            self.kinds["mutated, readable"] += 1
            if verdict == "parks":
                parked.append(framed(frame))
                continue
            readable.append(framed(frame))
            if verdict == "answered":
                answered.append(struct.unpack_from(">i", frame, 4)[0])
                frames[answered[-1]] = frame
        return Batch(b"".join(readable), len(readable) + len(parked) + 1, answered,
                     b"".join(parked) + self.last(), frames)

    def last(self) -> bytes:
        """An input after which the broker must close the connection."""
        rng = self.rng
        kind = rng.randrange(8)
        if kind <= 1:  # a mutated real request the door cannot read
            for _ in range(50):
                frame = mutate(rng, rng.choice(self.templates))
                if self.judge(frame) is None:
                    self.kinds["mutated, unreadable"] += 1
                    return framed(frame)
        if kind == 2:  # a real request cut short, its size prefix telling the cut length
            frame = rng.choice(self.templates)
            self.kinds["truncated"] += 1
            return framed(frame[:rng.randrange(len(frame))])
        if kind == 3:  # a size prefix promising more than ever comes (then end of stream)
            frame = rng.choice(self.templates)
            self.kinds["cut off"] += 1
            return SIZE.pack(len(frame) + rng.randint(1, 1000)) + frame
        if kind == 4:  # a size prefix negative or over socket.request.max.bytes
            self.kinds["size out of bounds"] += 1
            size = rng.choice([-1, -(2**31), MAX_REQUEST + 1, 2**31 - 1,
                               rng.randrange(MAX_REQUEST + 1, 2**31)])
            return SIZE.pack(size) + rng.randbytes(rng.randrange(64))
        if kind == 5:  # an API key outside the table
            self.kinds["unknown API"] += 1
            return framed(struct.pack(">hhih", rng.choice(UNKNOWN_KEYS), rng.randrange(12),
                                      rng.randrange(2**31), 4) + b"fuzz" + rng.randbytes(40))
        if kind == 6:  # a served API at a version outside its range
            self.kinds["unknown version"] += 1
            api = rng.choice([a for a in APIS.values() if a.key != k.API_VERSIONS])
            version = rng.choice([api.min_version - 1, api.max_version + 1,
                                  rng.randrange(api.max_version + 1, 32768), -1])
            frame = bytearray(rng.choice(self.templates))
            struct.pack_into(">hh", frame, 0, api.key, version)
            return framed(bytes(frame))
        self.kinds["random bytes"] += 1  # raw, no framing at all
        return rng.randbytes(rng.randrange(1, 600))


# --- sending them ------------------------------------------------------------------------------

@dataclass
class _Peer:
    """A connection: its readable inputs go out pipelined; once each of them
    that takes a slot is answered (in order, by correlation id), the last,
    unreadable input follows and the broker must close."""

    socket: socket.socket
    batch: Batch
    data: bytes = b""  # what is being sent: the readable inputs, then the last ones
    sent: int = 0
    received: bytearray = field(default_factory=bytearray)
    responses: int = 0
    sent_last: bool = False
    last_progress: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.data = self.batch.readable


@dataclass
class StormResult:
    inputs: int = 0
    connections: int = 0
    responses: int = 0
    stuck: int = 0
    stuck_on: list[str] = field(default_factory=list)  # what each stuck one waited for
    closed_early: int = 0
    refused: int = 0
    out_of_order: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def storm(host: str, port: int, inputs: Inputs, total: int, budget_s: float,
          alive: Callable[[], bool]) -> StormResult:
    """Send `total` inputs over CONNECTIONS connections at a time; `alive`
    says whether the appliance still runs (asked when a connect is refused)."""
    result = StormResult()
    selector = selectors.DefaultSelector()
    began = time.monotonic()
    deadline = began + budget_s
    queued = 0  # inputs handed to connections so far

    def send_last(peer: _Peer) -> None:
        """The broker answered every readable input: now the unreadable one."""
        peer.data, peer.sent, peer.sent_last = peer.batch.last, 0, True

    retry: list[Batch] = []

    def open_one() -> None:
        nonlocal queued
        batch = retry.pop() if retry else inputs.connection()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((host, port))
        peer = _Peer(sock, batch)
        if not peer.data:
            send_last(peer)
        queued += batch.inputs
        result.connections += 1
        selector.register(sock, selectors.EVENT_WRITE | selectors.EVENT_READ, peer)

    def finish(peer: _Peer, counted: bool) -> None:
        """Done with a connection; inputs not counted (stuck, refused, closed
        early) are made up for by more connections."""
        nonlocal queued
        selector.unregister(peer.socket)
        peer.socket.close()
        result.responses += peer.responses
        if counted:
            result.inputs += peer.batch.inputs
        else:
            queued -= peer.batch.inputs

    while True:
        now = time.monotonic()
        while len(selector.get_map()) < CONNECTIONS and queued < total and now < deadline:
            open_one()
        if not selector.get_map():
            break
        for key, mask in selector.select(timeout=0.5):
            peer: _Peer = key.data
            if mask & selectors.EVENT_WRITE and peer.sent < len(peer.data):
                try:
                    count = peer.socket.send(memoryview(peer.data)[peer.sent:peer.sent + 262144])
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    if exc.errno == errno.ECONNREFUSED and peer.sent == 0 and not peer.sent_last:
                        # the connect itself refused (seen about once in 3,000 connections,
                        # with thousands of the broker's closed ones in TIME_WAIT): again
                        result.refused += 1
                        assert alive(), "the appliance exited during the storm"
                        finish(peer, counted=False)
                        retry.append(peer.batch)
                        continue
                    if exc.errno not in (errno.ECONNRESET, errno.EPIPE):
                        raise
                    result.closed_early += 1  # before the unreadable input was out
                    finish(peer, counted=False)
                    continue
                peer.sent += count
                peer.last_progress = time.monotonic()
                if peer.sent == len(peer.data):
                    if peer.sent_last:
                        peer.socket.shutdown(socket.SHUT_WR)  # then the end of the stream
                        selector.modify(peer.socket, selectors.EVENT_READ, peer)
                    elif peer.responses == len(peer.batch.answered):
                        send_last(peer)  # nothing to wait for
            if mask & selectors.EVENT_READ:
                try:
                    data = peer.socket.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    if peer.sent_last:
                        finish(peer, counted=True)  # closed by the broker, as it must
                    else:
                        result.closed_early += 1
                        finish(peer, counted=False)
                    continue
                peer.last_progress = time.monotonic()
                peer.received += data
                while len(peer.received) >= 8:
                    size, correlation_id = struct.unpack_from(">ii", peer.received)
                    assert 4 <= size <= MAX_REQUEST, f"a response of {size} bytes"
                    if len(peer.received) < 4 + size:
                        break
                    if peer.responses >= len(peer.batch.answered):
                        if not peer.sent_last:  # a parked fetch may answer before the close
                            result.out_of_order.append(f"an unexpected response {correlation_id}")
                    elif peer.batch.answered[peer.responses] != correlation_id:
                        result.out_of_order.append(
                            f"response {peer.responses} has correlation id {correlation_id}, "
                            f"due: {peer.batch.answered[peer.responses:peer.responses + 3]}")
                    peer.responses += 1
                    del peer.received[:4 + size]
                if (not peer.sent_last and peer.sent == len(peer.data)
                        and peer.responses == len(peer.batch.answered)):
                    send_last(peer)
        now = time.monotonic()
        for key in list(selector.get_map().values()):
            peer = key.data
            if now - peer.last_progress > STUCK_S:
                result.stuck += 1  # a parked request holds it (a mutated max_wait): drop it
                if peer.responses < len(peer.batch.answered):
                    frame = peer.batch.frames[peer.batch.answered[peer.responses]]
                    calls = inputs.door.decode(0, frame, lambda: 0).calls
                    result.stuck_on.append(repr([core for _, core in calls])[:300])
                finish(peer, counted=False)
    result.elapsed_s = time.monotonic() - began
    return result


# --- checks ------------------------------------------------------------------------------------

def produce_known(bootstrap: str, seed: int) -> list[tuple]:
    """(partition, offset, key, value, headers) of records acknowledged with acks=all."""
    rng = random.Random(seed)
    with Producer(bootstrap, acks="all", linger_ms=2) as producer:
        sent = []
        for i in range(KNOWN_RECORDS):
            key, value = b"k%d" % i, rng.randbytes(rng.randrange(1, 400))
            headers = [("n", b"%d" % i)] if i % 2 else []
            sent.append((key, value, headers, producer.send(
                KNOWN_TOPIC, value=value, key=key, headers=headers, partition=i % PARTITIONS)))
        return sorted((f.result(timeout=20).partition, f.result().offset, key, value,
                       tuple(headers)) for key, value, headers, f in sent)


def kafka_read_back(kafka_bootstrap: str, known: list[tuple]) -> list[tuple]:
    """The known topic from its start through kafka-python on the Kafka port, as
    far as the known records reach in each partition."""
    reach = {p: max(o for q, o, *_ in known if q == p) for p in range(PARTITIONS)}
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, request_timeout_ms=10_000)
    try:
        consumer.assign([TopicPartition(KNOWN_TOPIC, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        got: list[tuple] = []

        def complete() -> bool:
            for batch in consumer.poll(timeout_ms=500).values():
                got.extend((m.partition, m.offset, m.key, m.value, tuple(m.headers))
                           for m in batch)
            return all(any(p == q and o >= last for q, o, *_ in got)
                       for p, last in reach.items())

        wait_for(complete, 30, "kafka-python reading the known records back")
    finally:
        consumer.close()
    return sorted(r for r in got if r[1] <= reach[r[0]])


_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", re.MULTILINE)


def tracebacks(log: str) -> list[str]:
    """The exception each logged traceback ended with (the last of a chain)."""
    out = []
    starts = [m.start() for m in _RECORD.finditer(log)] + [len(log)]
    for start, end in itertools.pairwise(starts):
        record = log[start:end]
        if "Traceback (most recent call last)" in record:
            ends = [line for line in record.splitlines()[1:]
                    if line and not line.startswith((" ", "Traceback", "During handling"))]
            out.append(ends[-1] if ends else record)
    return out


def test_malformed_input_on_the_kafka_port_changes_nothing(tmp_path):
    seed = fuzz_seed("RINGLOG_KAFKA_FUZZ_SEED", "kafka fuzz")
    appliance = start_appliance(tmp_path, "auto.create.topics.enable=false",
                                "delete.topic.enable=false")
    try:
        with replayable(appliance, "kafka fuzz", seed):
            _storm_and_check(appliance, seed)
    finally:
        if appliance.process.poll() is None:
            appliance.kill()


def _storm_and_check(appliance: Appliance, seed: int) -> None:
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic(KNOWN_TOPIC, PARTITIONS)
        admin.create_topic(OTHER_TOPIC, PARTITIONS)
        wait_for(lambda: all(all(p.get("error") is None for p in admin.describe_topic(t)[
            "partitions"]) for t in (KNOWN_TOPIC, OTHER_TOPIC)), 20, "the topics serving")
    known = produce_known(appliance.bootstrap, seed)
    supervisor = appliance.process.pid
    workers = sorted(appliance.worker_pids())
    assert len(workers) == 2

    inputs = Inputs(random.Random(seed))
    host, port = appliance.kafka_bootstrap.rsplit(":", 1)
    result = storm(host, int(port), inputs, INPUTS, STORM_BUDGET_S,
                   alive=lambda: appliance.process.poll() is None or print(
                       f"the appliance exited with {appliance.process.returncode}"))
    print(f"kafka fuzz: {result.inputs:,} inputs read by the broker over {result.connections:,} "
          f"connections in {result.elapsed_s:.1f} s, {result.responses:,} responses, "
          f"{result.stuck} stuck, {result.refused} connects refused; {dict(inputs.kinds)}")
    if result.stuck_on:
        print("stuck on:", *result.stuck_on[:30], sep="\n  ")
    assert result.inputs >= INPUTS, f"seed {seed}: only {result.inputs:,} inputs in the budget"
    assert not result.out_of_order, f"seed {seed}: {result.out_of_order[:5]}"
    assert result.closed_early == 0, (
        f"seed {seed}: the broker closed {result.closed_early} connections on a readable input")
    assert result.stuck <= result.connections // 100, f"seed {seed}: {result.stuck} stuck"
    assert result.refused <= result.connections // 100, f"seed {seed}: {result.refused} refused"

    # every process alive, the same ones, all workers ready
    assert appliance.process.poll() is None, f"seed {seed}: the supervisor died"
    assert appliance.process.pid == supervisor
    assert sorted(appliance.worker_pids()) == workers, f"seed {seed}: a worker died"
    with Admin(appliance.bootstrap) as admin:
        status = admin.status()
    assert status["workers"] == [0, 1] and status["serving"], status

    # a well-formed Kafka client reads the known records back, byte for byte, where they were
    assert kafka_read_back(appliance.kafka_bootstrap, known) == known, (
        f"seed {seed}: the known records changed")

    # every batch in every log is whole and CRC-valid, offsets contiguous
    wire = Wire(appliance.bootstrap)
    try:
        counts = decode_every_partition(wire, seed)
    finally:
        wire.close()
    in_known = sum(n for (topic, _), n in counts.items() if topic == KNOWN_TOPIC)
    assert in_known >= KNOWN_RECORDS, counts
    print(f"decoded {sum(counts.values()):,} records in {len(counts)} partitions "
          f"({in_known - KNOWN_RECORDS:,} from mutated produces in {KNOWN_TOPIC})")

    unexpected = tracebacks(appliance.stderr())
    assert not unexpected, f"seed {seed}: the appliance logged tracebacks: {unexpected[:10]}"
    assert appliance.stop() == 0, f"seed {seed}: {appliance.stderr_tail(40)}"
