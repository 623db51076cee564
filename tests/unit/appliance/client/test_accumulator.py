"""The C send() (appliance.client._accumulator) against its reference, Producer._python_send.

Two accumulators get the same records, one through each path, and must end
with the same batches: partition, values, keys, timestamps, headers, sizes,
callbacks and the encoded record batch, the same futures and counters, and
the same refusals. Each record also says whether the C path should have
done it itself or handed it over; a C path that handed everything over
would otherwise pass.

These are the accumulator's side of send() alone: no sender thread runs, so
the batches stay where send() left them (closed ones in `_retries`). The
whole producer against a real appliance is in tests/integration.
"""

from __future__ import annotations

import importlib
import os
import random
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.client.producer import Producer
from appliance.client.producer_batch import NATIVE, ProducerBatch, RecordFuture
from appliance.client.record_accumulator import RecordAccumulator
from appliance.partitioner import DefaultPartitioner, murmur2
from shm.errors import UnknownTopicOrPartitionError
from shm.records import encode_columns

if os.environ.get("RINGLOG_PYTHON_SEND", "") not in ("", "0"):
    pytest.skip("RINGLOG_PYTHON_SEND leaves the C accumulator out", allow_module_level=True)
# Not built is a failure here, not a skip: a broken build must not pass as Python.
native = importlib.import_module("appliance.client._accumulator")

PARTITIONS = {"orders": 3, "audit": 1}
FIXED_NOW = 1_700_000_000_000  # stands in for "now" timestamps when encoding
SETTINGS = settings(deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow])


def accumulator(seed: int, batch_size: int, buffer_memory: int = 1 << 40,
                partitioner: object | None = None) -> Producer:
    """A Producer's accumulator side: no sender thread, no connection, the
    topics' partition counts known."""
    producer = Producer.__new__(Producer)
    producer._partitions = dict(PARTITIONS)
    RecordAccumulator.__init__(
        producer, linger_s=3600, batch_size=batch_size, buffer_memory=buffer_memory,
        max_block_s=0.05, delivery_timeout_s=120,
        partitioner=partitioner or DefaultPartitioner(random.Random(seed)))
    return producer


def discard(producer: Producer) -> None:
    os.close(producer._wake_r)
    os.close(producer._wake_w)


# --- records ----------------------------------------------------------------------------

header_values = st.one_of(st.none(), st.binary(max_size=12))
header_lists = st.lists(st.tuples(st.text(max_size=6), header_values), max_size=3)
unusual = st.sampled_from(["bytearray value", "memoryview value", "memoryview key", "list header",
                           "bytes header name", "bool partition", "bool timestamp",
                           "unknown keyword", "argument twice"])
PARAMETERS = ("topic", "value", "key", "partition", "timestamp", "headers", "on_delivery")


@st.composite
def records(draw: st.DrawFn) -> dict:
    """One send() call's arguments; now and then one the C path leaves to Python."""
    topic = draw(st.sampled_from(sorted(PARTITIONS)))
    count = PARTITIONS[topic]
    call: dict = {"topic": topic, "value": draw(st.one_of(st.none(), st.binary(max_size=80)))}
    if draw(st.booleans()):
        call["key"] = draw(st.one_of(st.none(), st.binary(max_size=20)))
    if draw(st.integers(0, 2)) == 0:
        call["partition"] = draw(st.one_of(st.integers(0, count - 1),
                                           st.sampled_from([-1, count, 2**70])))
    if draw(st.booleans()):
        call["timestamp"] = draw(st.one_of(st.none(), st.integers(0, 2**63 - 1),
                                           st.sampled_from([-5, 2**63])))
    if draw(st.booleans()):
        shape = draw(st.sampled_from([list, tuple]))
        call["headers"] = draw(st.one_of(st.none(), header_lists.map(shape)))
    if draw(st.integers(0, 4)) == 0:
        call["on_delivery"] = True  # a callback per producer, made by the runner
    if draw(st.integers(0, 9)) == 0:
        oddity = draw(unusual)
        if oddity == "bytearray value":
            call["value"] = bytearray(call["value"] or b"")
        elif oddity == "memoryview value":  # of 4-byte items: len() is not its bytes
            call["value"] = memoryview(bytes(4 * len(call["value"] or b""))).cast("I")
        elif oddity == "memoryview key":
            call["key"] = memoryview(b"k" + (call.get("key") or b""))
        elif oddity == "list header":
            call["headers"] = [["name", b"value"]]
        elif oddity == "bytes header name":
            call["headers"] = [("fine", None), (b"name", b"value")]
        elif oddity == "bool partition":
            call["partition"] = True
        elif oddity == "bool timestamp":
            call["timestamp"] = True
        else:
            call[oddity] = True  # a TypeError on both paths, and nothing queued
    # How many leading parameters go by position (the rest by keyword).
    call["positional"] = draw(st.integers(1, len(PARAMETERS)))
    return call


def arguments(call: dict, on_delivery) -> tuple[list, dict]:
    """A call's positional and keyword arguments, the missing leading ones as
    their defaults (None)."""
    given = {k: v for k, v in call.items() if k not in ("positional", "argument twice")}
    if given.get("on_delivery"):
        given["on_delivery"] = on_delivery
    args = [given.pop(name, None) for name in PARAMETERS[:call["positional"]]]
    if "argument twice" in call:
        given["topic"] = call["topic"]
    return args, given


class Rotating:
    """A partitioner of its own, the same on both sides: its answer depends on
    how often it was called; now and then it refuses (ValueError), answers out
    of range, or answers with a bool (an int, but not a plain one)."""

    def __init__(self) -> None:
        self.calls = 0

    def __repr__(self) -> str:  # in the refusal's message: the same on both sides
        return "Rotating()"

    def answer(self, n: int, key: bytes | None, count: int) -> int | ValueError:
        if n % 5 == 2:
            return ValueError(f"no partition for call {n}")
        if n % 4 == 3:
            return count
        if n % 3 == 1:
            return True
        return (n + len(key or b"")) % count

    def __call__(self, topic, key, count, available=None):
        self.calls += 1
        answer = self.answer(self.calls - 1, key, count)
        if isinstance(answer, ValueError):
            raise answer
        return answer


def c_should_take(producer: Producer, call: dict) -> bool:
    """Whether the C path does this record itself (see _accumulator.c); a
    refusal it turns into a failed future counts as done."""
    if "unknown keyword" in call or "argument twice" in call:
        return False
    count = PARTITIONS[call["topic"]]
    key, partition, ts = call.get("key"), call.get("partition"), call.get("timestamp")
    headers = call.get("headers") or ()
    if partition is not None:
        if type(partition) is not int or not 0 <= partition < count:
            return False
    elif isinstance(producer.partitioner, Rotating):
        answer = producer.partitioner.answer(producer.partitioner.calls, key, count)
        if isinstance(answer, ValueError) or not 0 <= answer < count:
            return True  # refused in C
        if type(answer) is not int:
            return False  # the Python path carries on with it
    elif type(key) not in (bytes, type(None)):
        return False  # the DefaultPartitioner hashes bytes only in C
    return (type(call["value"]) in (bytes, bytearray, memoryview, type(None))
            and type(key) in (bytes, type(None))
            and (ts is None or (type(ts) is int and 0 <= ts < 2**63))
            and all(type(h) is tuple and type(h[0]) is str for h in headers))


def run(producer: Producer, send, calls: list[dict], delivered: list) -> list:
    """Each call's outcome: ("future", future, now window) or ("raised", exception)."""
    outcomes = []
    for i, call in enumerate(calls):
        args, kwargs = arguments(
            call, lambda error, md, i=i: delivered.append((i, error, md)))
        before = time.time_ns() // 1_000_000
        try:
            future = send(*args, **kwargs)
        except Exception as exc:  # the refusal is what is compared
            outcomes.append(("raised", exc))
            continue
        outcomes.append(("future", future, (before, time.time_ns() // 1_000_000)))
    return outcomes


def batches_of(producer: Producer) -> list[ProducerBatch]:
    """Closed batches in the order they closed, then the open ones in the order they opened."""
    return [*producer._retries, *producer._open.values()]


def now_stamped(producer: Producer, outcomes: list, calls: list[dict]) -> set[tuple[int, int]]:
    """(id of batch, index) of the records whose timestamp was "now"."""
    return {(id(o[1]._batch), o[1]._index) for o, call in zip(outcomes, calls, strict=True)
            if o[0] == "future" and call.get("timestamp") is None}


def comparable(batch: ProducerBatch, now: set[tuple[int, int]]) -> dict:
    """A batch's contents, its "now" timestamps replaced by one fixed value."""
    timestamps = [FIXED_NOW if (id(batch), i) in now else ts
                  for i, ts in enumerate(batch.timestamps)]
    return {
        "topic": batch.topic, "partition": batch.partition, "values": batch.values,
        "keys": batch.keys, "timestamps": timestamps, "headers": batch.headers,
        "keyed": batch.keyed, "size": batch.size,
        "callbacks": [index for index, _ in batch.callbacks],
        "encoded": encoded(batch, timestamps),
    }


def encoded(batch: ProducerBatch, timestamps: list[int]) -> bytes | tuple[str, str]:
    """The record batch the sender would send, or how the encoder refuses it
    (a header name that is not str gets this far, as it does in Python)."""
    try:
        return encode_columns(batch.values, batch.keys if batch.keyed else None, timestamps,
                              batch.headers)
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)


@SETTINGS
@given(calls=st.lists(records(), min_size=1, max_size=60), seed=st.integers(0, 2**32),
       batch_size=st.sampled_from([64, 300, 2000, 1 << 20]), own_partitioner=st.booleans())
def test_the_c_path_builds_the_batches_the_python_path_builds(calls, seed, batch_size,
                                                              own_partitioner):
    c_side = accumulator(seed, batch_size, partitioner=Rotating() if own_partitioner else None)
    py_side = accumulator(seed, batch_size, partitioner=Rotating() if own_partitioner else None)
    try:
        c_delivered: list = []
        expected_fallbacks = []
        c_outcomes = []
        for call in calls:
            takes = c_should_take(c_side, call)
            before = c_side._fallbacks
            c_outcomes += run(c_side, c_side.send, [call], c_delivered)
            expected_fallbacks.append((takes, c_side._fallbacks - before))
        py_outcomes = run(py_side, py_side._python_send, calls, [])

        # The C path did what it should itself, and handed over the rest.
        assert [done for _, done in expected_fallbacks] == \
            [0 if takes else 1 for takes, _ in expected_fallbacks]

        c_batches, py_batches = batches_of(c_side), batches_of(py_side)
        c_now, py_now = now_stamped(c_side, c_outcomes, calls), \
            now_stamped(py_side, py_outcomes, calls)
        assert [comparable(b, c_now) for b in c_batches] == \
            [comparable(b, py_now) for b in py_batches]
        assert (c_side._buffered, c_side._unfinished) == (py_side._buffered, py_side._unfinished)
        if own_partitioner:  # asked as often: never twice for a record
            assert c_side.partitioner.calls == py_side.partitioner.calls

        c_place = {id(b): i for i, b in enumerate(c_batches)}
        py_place = {id(b): i for i, b in enumerate(py_batches)}
        for call, c_out, py_out in zip(calls, c_outcomes, py_outcomes, strict=True):
            assert c_out[0] == py_out[0]
            if c_out[0] == "raised":
                assert (type(c_out[1]), str(c_out[1])) == (type(py_out[1]), str(py_out[1]))
                continue
            c_future, py_future = c_out[1], py_out[1]
            assert type(c_future) is type(py_future) is RecordFuture
            if py_future.done():  # refused before batching: a failed future
                error, c_error = py_future.exception(0), c_future.exception(0)
                assert (type(c_error), str(c_error)) == (type(error), str(error))
                continue
            assert not c_future.done()
            assert c_place[id(c_future._batch)] == py_place[id(py_future._batch)]
            assert c_future._index == py_future._index
            if call.get("timestamp") is None:  # "now", as the wall clock read it
                low, high = c_out[2]
                assert low <= c_future._batch.timestamps[c_future._index] <= high
    finally:
        discard(c_side)
        discard(py_side)


def test_the_producer_sends_through_the_c_module():
    assert NATIVE is native and Producer.send is native.Accumulator.send
    assert isinstance(accumulator(1, 100)._lock._lock, native.RLock)


@given(data=st.binary(max_size=200))
def test_c_murmur2_is_kafkas(data):
    assert native.murmur2(data) == murmur2(data)


def test_a_closed_producer_fails_the_future_on_both_paths():
    producer = accumulator(1, 1 << 20)
    try:
        producer._closing = True
        for send in (producer.send, producer._python_send):
            future = send("orders", b"late", partition=0)
            assert future.done()
            with pytest.raises(RuntimeError, match="closed"):
                future.result(0)
        assert producer._fallbacks == 1 and producer._open == {} and producer._buffered == 0
    finally:
        discard(producer)


def test_a_full_buffer_hands_the_record_to_the_python_path_which_waits():
    producer = accumulator(1, 1 << 20, buffer_memory=100)
    try:
        producer.send("orders", b"x" * 60, partition=0)
        assert producer._fallbacks == 0
        # No sender frees room here, so the Python path's wait runs out.
        with pytest.raises(Exception, match="stayed full"):
            producer.send("orders", b"x" * 60, partition=0)
        assert producer._fallbacks == 1 and producer._buffered == 76
    finally:
        discard(producer)


def test_a_partitioner_of_its_own_is_asked_once_from_c():
    calls = []

    def partitioner(topic, key, count, available=None):
        calls.append((topic, key, count, available))
        return count - 1

    producer = accumulator(1, 1 << 20, partitioner=partitioner)
    try:
        future = producer.send("orders", b"v", key=b"k")
        assert calls == [("orders", b"k", 3, None)] and future._batch.partition == 2
        producer.send("orders", b"v", partition=0)  # an explicit partition needs none
        # Python carries on with its answer (a value it sizes with len()), not asking again
        producer.send("orders", ["not", "bytes"], key=b"k")
        assert len(calls) == 2 and producer._fallbacks == 1
        producer.partitioner = DefaultPartitioner()  # its rules are done in C
        producer.send("orders", b"v", key=b"k")
        assert len(calls) == 2 and producer._fallbacks == 1
    finally:
        discard(producer)


def test_a_partitioner_that_refuses_fails_the_future_from_c():
    answers = iter([ValueError("no room"), UnknownTopicOrPartitionError("gone"), 7, 0])

    def partitioner(topic, key, count, available=None):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    producer = accumulator(1, 1 << 20, partitioner=partitioner)
    try:
        failed = [producer.send("orders", b"v") for _ in range(3)]
        assert [type(f.exception(0)) for f in failed] == \
            [ValueError, UnknownTopicOrPartitionError, ValueError]
        assert str(failed[2].exception(0)) == (
            f"partitioner {partitioner!r} chose partition 7 for topic 'orders', "
            "which has 3 partitions")
        assert not producer.send("orders", b"v").done()
        assert producer._fallbacks == 0 and producer._unfinished == 1
    finally:
        discard(producer)


def test_a_partitioner_that_raises_something_else_raises_to_the_caller():
    def partitioner(topic, key, count, available=None):
        raise KeyError("mine")

    producer = accumulator(1, 1 << 20, partitioner=partitioner)
    try:
        with pytest.raises(KeyError, match="mine"):
            producer.send("orders", b"v")
        assert producer._unfinished == 0 and producer._fallbacks == 0
    finally:
        discard(producer)


def test_a_full_batch_is_closed_and_wakes_the_sender():
    producer = accumulator(1, batch_size=100)
    try:
        futures = [producer.send("audit", b"x" * 40, partition=0) for _ in range(3)]
        assert [f._index for f in futures] == [0, 1, 0]
        assert len(producer._retries) == 1 and producer._retries[0].size == 112
        assert producer._retries[0].deadline > 0  # _close_batch ran
        assert len(os.read(producer._wake_r, 100)) == 3  # opened, closed, opened
    finally:
        discard(producer)


def test_send_waits_for_the_lock_the_python_side_holds():
    """While another thread holds `_lock` (the sender's side does), send() does
    not get in; it waits with the GIL released, so the holder keeps running."""
    producer = accumulator(1, 1 << 20)
    try:
        about, sent = threading.Event(), threading.Event()

        def send() -> None:
            about.set()
            producer.send("audit", b"v", partition=0)
            sent.set()

        with producer._lock:
            sender = threading.Thread(target=send)
            sender.start()
            about.wait()
            for _ in range(20):  # the holder runs on while send() waits
                assert not sent.wait(0.001)
            assert producer._unfinished == 0 and producer._open == {}
        sender.join()
        assert sent.is_set() and producer._unfinished == 1
    finally:
        discard(producer)


def test_the_lock_is_reentrant_and_serves_a_condition():
    lock = native.RLock()
    condition = threading.Condition(lock)
    woken = []

    def take() -> None:
        woken.append(lock.acquire(timeout=5))
        lock.release()

    with condition:
        with condition:  # re-entered, as by a delivery callback that sends
            waiter = threading.Thread(target=take)
            waiter.start()
            assert condition.wait(0.01) is False  # lets go of both levels, takes both back
            assert lock._is_owned()
        assert lock._is_owned()  # one level left
    assert not lock._is_owned()
    waiter.join()
    assert woken == [True]
    with pytest.raises(RuntimeError, match="un-acquired"):
        lock.release()
    assert lock.acquire(blocking=False) and lock.acquire(timeout=0)
    lock.release()
    lock.release()
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(False, 1)


def test_threads_sending_at_once_lose_no_record():
    producer = accumulator(1, batch_size=4096)
    try:
        def send_many_times(n: int) -> None:
            for i in range(2000):
                producer.send("orders", b"%d-%d" % (n, i), key=b"%d" % i)

        threads = [threading.Thread(target=send_many_times, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batches = batches_of(producer)
        assert producer._unfinished == 8000 == sum(len(b.values) for b in batches)
        assert producer._buffered == sum(b.size for b in batches)
        assert all(len(b.values) == len(b.keys) == len(b.timestamps) for b in batches)
        assert sorted(v for b in batches for v in b.values) == \
            sorted(b"%d-%d" % (n, i) for n in range(4) for i in range(2000))
    finally:
        discard(producer)


def test_the_lock_excludes_and_wakes_under_forced_thread_switches():
    """Read-modify-write under the lock from several threads, the GIL handed
    over as often as CPython allows, and Condition hand-offs: no update is
    lost and no waiter sleeps through its notify (it would hang here)."""
    lock = native.RLock()
    ready = threading.Condition(lock)
    state = {"count": 0, "turn": 0}
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        def add() -> None:
            for _ in range(3000):
                with lock:
                    seen = state["count"]
                    for _ in range(5):
                        pass  # room for a thread switch inside the critical section
                    state["count"] = seen + 1

        def take_turns(me: int) -> None:
            for _ in range(300):
                with ready:
                    while state["turn"] != me:
                        ready.wait()
                    state["turn"] = 1 - me
                    ready.notify_all()

        threads = [threading.Thread(target=add) for _ in range(3)]
        threads += [threading.Thread(target=take_turns, args=(me,)) for me in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert state["count"] == 9000 and state["turn"] == 0
    assert not lock._is_owned() and lock.acquire(blocking=False)
    lock.release()
