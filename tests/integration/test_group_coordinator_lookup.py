"""A group's requests go to its coordinator, found with find_coordinator, and
follow it when it moves, through a real single node.

A single node coordinates every group. To see the client follow a
coordinator, a stand-in broker front end (`Interposer`, a ZeroMQ ROUTER in
a thread) sits in front of the real one: it answers some requests itself
(find_coordinator naming a coordinator, NOT_COORDINATOR, no answer at all)
and forwards the rest, so the group lives on the real node throughout.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import zmq

from appliance.client import Admin, Consumer, Producer
from appliance.client.connection import connect_dealer
from tests.integration.conftest import free_port

TOPIC = "orders"
GROUP_APIS = {"join_group", "heartbeat", "leave_group", "offset_commit", "offset_fetch",
              "describe_groups"}
DROP = object()  # an answer that is no answer: the request is never replied to

# What the interposer does with a request: None forwards it to the real node,
# a str answers that error, a dict answers those fields, DROP answers nothing.
Answer = Callable[[str, dict], "str | dict | object | None"]


class Interposer:
    """A broker front end on its own port that answers what `answer` says and
    forwards everything else to the real node, one DEALER per client
    connection (so each client's correlation ids stay its own)."""

    def __init__(self, upstream: str, answer: Answer):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.answer = answer
        self.seen: list[str] = []  # every api received, in order
        self._upstream = f"tcp://{upstream}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        context = zmq.Context.instance()
        router = context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.bind(f"tcp://127.0.0.1:{self.port}")
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        dealers: dict[bytes, zmq.Socket] = {}
        clients: dict[zmq.Socket, bytes] = {}
        try:
            while not self._stop.is_set():
                for socket, _ in poller.poll(50):
                    if socket is router:
                        identity, *frames = router.recv_multipart()
                        self._handle(router, identity, frames, dealers, clients, poller,
                                     context)
                    else:
                        router.send_multipart([clients[socket], *socket.recv_multipart()])
        finally:
            for dealer in dealers.values():
                dealer.close(linger=0)
            router.close(linger=0)

    def _handle(self, router: zmq.Socket, identity: bytes, frames: list[bytes],
                dealers: dict, clients: dict, poller: zmq.Poller,
                context: zmq.Context) -> None:
        header = orjson.loads(frames[0])
        api = header.get("api", "")
        self.seen.append(api)
        fields = {k: v for k, v in header.items() if k not in ("api", "v", "id")}
        answer = self.answer(api, fields)
        if answer is DROP:
            return
        if answer is None:
            dealer = dealers.get(identity)
            if dealer is None:
                dealer = dealers[identity] = connect_dealer(context, self._upstream)
                clients[dealer] = identity
                poller.register(dealer, zmq.POLLIN)
            dealer.send_multipart(frames)
            return
        reply: dict[str, Any] = {"api": api, "id": header["id"]}
        if isinstance(answer, str):
            reply |= {"error": answer, "message": f"{answer} (from the interposer)"}
        else:
            reply |= {"error": None, **answer}
        router.send_multipart([identity, orjson.dumps(reply)])

    def count(self, api: str) -> int:
        return self.seen.count(api)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def orders(appliance) -> Iterator[Any]:
    """The real node with a topic of two partitions holding six records."""
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic(TOPIC, partitions=2)
    with Producer(appliance.bootstrap, acks="all", linger_ms=0) as producer:
        for i in range(6):
            producer.send(TOPIC, b"order-%d" % i, partition=i % 2)
        producer.flush(30)
    yield appliance


@contextlib.contextmanager
def interposer(upstream: str, answer: Answer) -> Iterator[Interposer]:
    front = Interposer(upstream, answer)
    try:
        yield front
    finally:
        front.close()


def consume(consumer: Consumer, want: int, timeout_s: float = 30) -> list[bytes]:
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < want and time.monotonic() < deadline:
        values += [m.value for m in consumer.poll(timeout_ms=200)]
    return values


def produce_more(bootstrap: str) -> list[bytes]:
    """Two more records, one per partition: what a member gets after its coordinator moved."""
    values = [b"order-6", b"order-7"]
    with Producer(bootstrap, acks="all", linger_ms=0) as producer:
        for i, value in enumerate(values):
            producer.send(TOPIC, value, partition=i)
        producer.flush(30)
    return values


def group_consumer(bootstrap: str, **kw: Any) -> Consumer:
    consumer = Consumer(bootstrap_servers=bootstrap, group_id="billing",
                        auto_offset_reset="earliest", heartbeat_interval_ms=200,
                        enable_auto_commit=False, **kw)
    consumer.subscribe([TOPIC])
    return consumer


ALL = sorted(b"order-%d" % i for i in range(6))


def test_a_single_node_coordinates_its_groups_consume_commit_and_describe(orders):
    with group_consumer(orders.bootstrap) as consumer:
        assert consumer._coordinator_lookup.coordinator == f"tcp://{orders.bootstrap}"
        assert sorted(consume(consumer, 6)) == ALL
        consumer.commit()
        assert consumer.committed(TOPIC, 0) == consumer.committed(TOPIC, 1) == 3
    with Admin(orders.bootstrap) as admin:
        assert "billing" in [g["group_id"] for g in admin.list_groups()]
        described = admin.describe_group("billing")
    assert sorted((o["partition"], o["committed"]) for o in described["offsets"]) == \
        [(0, 3), (1, 3)]


def test_a_broker_without_find_coordinator_is_taken_for_the_coordinator(orders):
    """A broker from before find_coordinator answers it UNSUPPORTED_VERSION:
    it is a single node, so the group's requests go to it."""
    with interposer(orders.bootstrap, lambda api, _f: "UNSUPPORTED_VERSION"
                    if api == "find_coordinator" else None) as front:
        with group_consumer(front.bootstrap) as consumer:
            assert sorted(consume(consumer, 6)) == ALL
            consumer.commit()
            assert consumer.committed(TOPIC, 1) == 3
        with Admin(front.bootstrap) as admin:
            assert "billing" in [g["group_id"] for g in admin.list_groups()]
            described = admin.describe_group("billing")
        assert {o["committed"] for o in described["offsets"]} == {3}
        assert front.count("find_coordinator") >= 2  # the consumer's, the admin's
        for api in ("join_group", "offset_commit", "offset_fetch", "leave_group",
                    "describe_groups"):
            assert front.count(api) >= 1, f"{api} went to the bootstrap broker"


def test_a_group_finds_its_coordinator_past_unavailable_and_not_coordinator(orders):
    """The first lookup finds no coordinator, the second names a broker that
    is not it (NOT_COORDINATOR), the third the real one: the member joins
    there and consumes, within one request timeout."""
    port = int(orders.bootstrap.rpartition(":")[2])
    finds: list[str] = []
    front_port: list[int] = []

    def answer(api: str, _fields: dict) -> str | dict | None:
        if api == "find_coordinator":
            finds.append(api)
            if len(finds) == 1:
                return "COORDINATOR_NOT_AVAILABLE"
            return {"broker_id": 7, "host": "127.0.0.1",
                    "port": front_port[0] if len(finds) == 2 else port}
        return "NOT_COORDINATOR" if api in GROUP_APIS else None

    with interposer(orders.bootstrap, answer) as front:
        front_port.append(front.port)
        with group_consumer(front.bootstrap, request_timeout_ms=10_000) as consumer:
            assert sorted(consume(consumer, 6)) == ALL
            consumer.commit()
        assert front.count("find_coordinator") == 3
        assert front.seen.count("join_group") == 1  # refused, then sent to the real node
    with Admin(orders.bootstrap) as admin:
        assert {o["committed"] for o in admin.describe_group("billing")["offsets"]} == {3}


def test_a_member_follows_its_coordinator_when_it_moves_mid_session(orders):
    """The coordinator is the interposer, then it answers NOT_COORDINATOR and
    names the real node: the refused heartbeat is sent there and the member
    carries on, reading what is produced after the move (here the group
    itself did not move, so it is still a member; after a real move it
    would join again)."""
    port = int(orders.bootstrap.rpartition(":")[2])
    moved = threading.Event()
    front_port: list[int] = []

    def answer(api: str, _fields: dict) -> str | dict | None:
        if api == "find_coordinator":
            return {"broker_id": 7, "host": "127.0.0.1",
                    "port": port if moved.is_set() else front_port[0]}
        return "NOT_COORDINATOR" if moved.is_set() and api in GROUP_APIS else None

    with interposer(orders.bootstrap, answer) as front:
        front_port.append(front.port)
        with group_consumer(front.bootstrap) as consumer:
            assert sorted(consume(consumer, 6)) == ALL
            consumer.commit()
            assert front.count("join_group") == 1 and front.count("offset_commit") == 1
            moved.set()
            before = len(front.seen)
            assert consume(consumer, 1, timeout_s=1) == []  # heartbeats are due meanwhile
            after_move = front.seen[before:]
            later = produce_more(orders.bootstrap)
            assert sorted(consume(consumer, 2)) == later
            consumer.commit()
            assert consumer.committed(TOPIC, 0) == consumer.committed(TOPIC, 1) == 4
        # one refused heartbeat, one lookup, and nothing more for the interposer
        assert after_move == ["heartbeat", "find_coordinator"]
        assert front.count("offset_commit") == 1, "the second commit went to the real node"


def test_a_silent_coordinator_is_looked_up_again_after_a_session(orders):
    """The coordinator stops answering: the heartbeat waits one session, the
    lookup names the real node, and the member goes on there (joining again,
    as the group evicted it meanwhile), from the group's commits."""
    port = int(orders.bootstrap.rpartition(":")[2])
    silent = threading.Event()
    front_port: list[int] = []

    def answer(api: str, _fields: dict) -> str | dict | object | None:
        if api == "find_coordinator":
            return {"broker_id": 7, "host": "127.0.0.1",
                    "port": port if silent.is_set() else front_port[0]}
        return DROP if silent.is_set() and api in GROUP_APIS else None

    with interposer(orders.bootstrap, answer) as front:
        front_port.append(front.port)
        with group_consumer(front.bootstrap, session_timeout_ms=6000,
                            request_timeout_ms=15_000) as consumer:
            assert sorted(consume(consumer, 6)) == ALL
            consumer.commit()
            silent.set()
            started = time.monotonic()
            while front.count("find_coordinator") < 2 and time.monotonic() - started < 30:
                consumer.poll(timeout_ms=200)
            assert 5 < time.monotonic() - started < 10  # a session's wait for the heartbeat
            later = produce_more(orders.bootstrap)
            assert sorted(consume(consumer, 2)) == later
        assert front.count("find_coordinator") == 2
        assert front.count("heartbeat") >= 1
