"""The producer's partitioner: keys go where Kafka's Java client sends them.

kafka-python (test-only here) is the independent oracle: its
``kafka.partitioner.DefaultPartitioner`` and ``murmur2`` are ports of the Java
client's.  The fixed vectors come from Kafka's own ``UtilsTest.testMurmur2`` and
from kafka-python's Java-compatibility test.
"""

from __future__ import annotations

import functools
import random
from collections import Counter

import kafka.partitioner.default as kafka_default
import pytest

from appliance.partitioner import (
    DefaultPartitioner,
    Partitioner,
    choose_partition,
    murmur2,
    partition_for_key,
    to_positive,
)


def signed32(n: int) -> int:
    """kafka-python's murmur2 gives the unsigned 32 bits; Java's int is signed."""
    return n - (1 << 32) if n & (1 << 31) else n


class FakeCluster:
    """The slice of kafka-python's ClusterMetadata its DefaultPartitioner reads."""

    def __init__(self, topic: str, num_partitions: int) -> None:
        self.topic = topic
        self.partitions = frozenset(range(num_partitions))

    def topics(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> frozenset[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> frozenset[int]:
        return self.partitions


def random_keys(count: int, seed: int, max_len: int = 100) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(max_len + 1)) for _ in range(count)]


# --- Keyed records: murmur2, exactly as Java computes it ----------------------------


def test_10000_random_keys_go_where_kafka_pythons_default_partitioner_sends_them(monkeypatch):
    """The acceptance test: every key, every partition count from 1 to 64."""
    keys = random_keys(10_000, seed=20240611)
    # kafka-python's partition() recomputes its pure-Python murmur2 for each of the
    # 64 partition counts; memoising it (same function, same answers) keeps this
    # test quick while the rest of its partition() runs as it is.
    monkeypatch.setattr(kafka_default, "murmur2", functools.cache(kafka_default.murmur2))
    oracle = kafka_default.DefaultPartitioner()
    clusters = [FakeCluster("t", n) for n in range(1, 65)]

    mismatches = [
        (key, cluster_n, ours, theirs)
        for key in keys
        for cluster_n, cluster in enumerate(clusters, start=1)
        if (ours := partition_for_key(key, cluster_n))
        != (theirs := oracle.partition("t", key, key, None, None, cluster))
    ]

    assert mismatches == []


def test_murmur2_is_kafka_pythons_murmur2_as_a_signed_java_int_for_every_length():
    # Lengths 0..300 cover each tail length (0-3 bytes) and both ways murmur2 reads
    # whole words (word by word for short keys, all at once for long ones).
    rng = random.Random(7)
    for length in range(301):
        for _ in range(5):
            data = rng.randbytes(length)
            assert murmur2(data) == signed32(kafka_default.murmur2(data)), data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # Kafka's clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafkas_own_test_vectors(data, expected):
    assert murmur2(data) == expected


@pytest.mark.parametrize(
    ("key", "partition"),
    [
        # kafka-python's test_murmur2_java_compatibility: partitions out of 1000, as
        # Kafka's Java partitioner chose them.
        (b"", 681),
        (b"a", 524),
        (b"ab", 434),
        (b"abc", 107),
        (b"123456789", 566),
        (b"\x00 ", 742),
    ],
)
def test_partition_for_key_matches_the_java_clients_choices(key, partition):
    assert partition_for_key(key, 1000) == partition


def test_murmur2_returns_a_signed_32_bit_int():
    values = [murmur2(key) for key in random_keys(2000, seed=3)]
    assert all(-(2**31) <= v < 2**31 for v in values)
    assert any(v < 0 for v in values) and any(v >= 0 for v in values)


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 7, 16, 47, 48, 49, 100, 1001])
def test_murmur2_accepts_any_bytes_like_key(length):
    data = random.Random(length).randbytes(length)
    assert murmur2(bytearray(data)) == murmur2(memoryview(data)) == murmur2(data)


def test_murmur2_of_a_long_key():
    data = random.Random(11).randbytes(100_000)
    assert murmur2(data) == signed32(kafka_default.murmur2(data))


def test_to_positive_clears_the_sign_bit_like_javas_utils_to_positive():
    assert to_positive(0) == 0
    assert to_positive(5) == 5
    assert to_positive(2**31 - 1) == 2**31 - 1
    assert to_positive(-1) == 2**31 - 1
    assert to_positive(-(2**31)) == 0  # not abs(): Integer.MIN_VALUE has no positive
    assert to_positive(-973932308) == -973932308 & 0x7FFFFFFF


def test_partition_for_key_is_to_positive_murmur2_modulo_the_partition_count():
    for key in random_keys(500, seed=5):
        for n in (1, 2, 3, 10, 64, 1000):
            assert partition_for_key(key, n) == to_positive(murmur2(key)) % n


@pytest.mark.parametrize("num_partitions", [0, -1])
def test_a_topic_has_at_least_one_partition(num_partitions):
    with pytest.raises(ValueError):
        partition_for_key(b"k", num_partitions)
    with pytest.raises(ValueError):
        DefaultPartitioner()("t", b"k", num_partitions)
    with pytest.raises(ValueError):
        DefaultPartitioner()("t", None, num_partitions)


def test_the_default_partitioner_hashes_keys():
    partitioner = DefaultPartitioner()
    for key in random_keys(500, seed=9):
        assert partitioner("t", key, 12) == partition_for_key(key, 12)


def test_an_empty_key_is_a_key_and_is_hashed_only_none_is_keyless():
    partitioner = DefaultPartitioner(random.Random(1))
    expected = partition_for_key(b"", 1000)
    assert expected == 681  # what Kafka's Java partitioner gives b"" (see above)
    for _ in range(20):
        assert partitioner("t", b"", 1000) == expected
        partitioner.on_new_batch("t")
    assert partitioner.sticky_partition("t") is None  # b"" never made one


def test_keyed_records_use_all_partitions_even_when_some_are_unavailable():
    """Java hashes over the topic's partition count, so a key's partition never moves."""
    partitioner = DefaultPartitioner()
    for key in random_keys(200, seed=13):
        assert partitioner("t", key, 8, available=[5]) == partition_for_key(key, 8)


# --- Keyless records: the sticky partition (KIP-480) --------------------------------


def test_keyless_records_stay_on_one_partition_until_a_new_batch():
    partitioner = DefaultPartitioner(random.Random(1))
    first = partitioner("t", None, 16)
    assert 0 <= first < 16
    assert {partitioner("t", None, 16) for _ in range(1000)} == {first}
    assert partitioner.sticky_partition("t") == first


def test_a_new_batch_moves_keyless_records_to_a_different_partition_which_then_sticks():
    partitioner = DefaultPartitioner(random.Random(2))
    previous = partitioner("t", None, 16)
    for _ in range(200):
        partitioner.on_new_batch("t")
        current = partitioner("t", None, 16)
        assert current != previous
        assert {partitioner("t", None, 16) for _ in range(10)} == {current}
        previous = current


def test_over_many_batches_keyless_records_spread_evenly_over_the_partitions():
    partitioner = DefaultPartitioner(random.Random(3))
    batches = 8000
    counts: Counter[int] = Counter()
    for _ in range(batches):
        counts[partitioner("t", None, 8)] += 1
        partitioner.on_new_batch("t")
    assert set(counts) == set(range(8))
    # 1000 batches each expected; the bound is about five standard deviations.
    assert all(abs(c - batches / 8) < 150 for c in counts.values()), counts


def test_each_topic_has_its_own_sticky_partition():
    partitioner = DefaultPartitioner(random.Random(4))
    a = partitioner("a", None, 1000)
    b = partitioner("b", None, 1000)
    partitioner.on_new_batch("a")
    assert partitioner("a", None, 1000) != a
    assert partitioner("b", None, 1000) == b


def test_a_topic_with_one_partition_keeps_it_across_batches():
    partitioner = DefaultPartitioner()
    for _ in range(10):
        assert partitioner("t", None, 1) == 0
        partitioner.on_new_batch("t")


def test_a_new_batch_before_any_keyless_record_is_harmless():
    partitioner = DefaultPartitioner()
    partitioner.on_new_batch("never-seen")
    assert 0 <= partitioner("never-seen", None, 4) < 4


def test_a_stale_new_batch_notice_does_not_move_the_partition_again():
    """Two senders both fill the batch on p; only the first notice moves the topic."""
    partitioner = DefaultPartitioner(random.Random(5))
    p = partitioner("t", None, 16)
    partitioner.on_new_batch("t", prev_partition=p)
    q = partitioner("t", None, 16)
    assert q != p
    partitioner.on_new_batch("t", prev_partition=p)  # the second sender's notice, late
    assert partitioner("t", None, 16) == q
    partitioner.on_new_batch("t", prev_partition=q)
    assert partitioner("t", None, 16) != q


def test_the_same_seed_gives_the_same_sticky_partitions():
    def run(partitioner: DefaultPartitioner) -> list[int]:
        chosen = []
        for _ in range(50):
            chosen.append(partitioner("t", None, 32))
            partitioner.on_new_batch("t")
        return chosen

    assert run(DefaultPartitioner(random.Random(6))) == run(DefaultPartitioner(random.Random(6)))


def test_a_topic_that_loses_partitions_gets_a_sticky_partition_that_exists():
    partitioner = DefaultPartitioner(random.Random(7))
    while (p := partitioner("t", None, 100)) < 50:
        partitioner.on_new_batch("t")
    assert p >= 50
    assert 0 <= partitioner("t", None, 50) < 50


# --- Available partitions ------------------------------------------------------------


def test_keyless_records_go_only_to_available_partitions():
    partitioner = DefaultPartitioner(random.Random(8))
    available = [1, 4, 6]
    seen = set()
    for _ in range(300):
        p = partitioner("t", None, 8, available)
        assert p in available
        seen.add(p)
        partitioner.on_new_batch("t")
    assert seen == set(available)


def test_available_partitions_may_be_any_sequence():
    partitioner = DefaultPartitioner(random.Random(9))
    for available in ((2, 3), range(4, 6), [7]):
        for _ in range(20):
            assert partitioner("t", None, 8, available) in available
            partitioner.on_new_batch("t")


def test_a_sticky_partition_that_becomes_unavailable_is_left_at_once():
    partitioner = DefaultPartitioner(random.Random(10))
    p = partitioner("t", None, 8)
    others = [q for q in range(8) if q != p]
    q = partitioner("t", None, 8, others)
    assert q in others
    assert partitioner("t", None, 8) == q  # and it sticks


def test_with_one_available_partition_a_new_batch_stays_on_it():
    partitioner = DefaultPartitioner()
    for _ in range(10):
        assert partitioner("t", None, 8, [3]) == 3
        partitioner.on_new_batch("t")


def test_with_no_partition_available_keyless_records_use_all_partitions():
    """As in Java: an empty list of available partitions means no leader is known."""
    partitioner = DefaultPartitioner(random.Random(11))
    seen = set()
    for _ in range(300):
        p = partitioner("t", None, 4, [])
        assert 0 <= p < 4
        seen.add(p)
        partitioner.on_new_batch("t")
    assert seen == {0, 1, 2, 3}


# --- The Partitioner protocol and explicit partitions --------------------------------


def test_the_default_partitioner_is_a_partitioner():
    assert isinstance(DefaultPartitioner(), Partitioner)


def test_a_plain_function_is_a_custom_partitioner():
    def last_partition(topic, key, num_partitions, available=None):
        return num_partitions - 1

    assert isinstance(last_partition, Partitioner)
    assert choose_partition(last_partition, "t", b"k", 6) == 5


def test_an_explicit_partition_is_used_without_asking_the_partitioner():
    calls = []

    def spy(topic, key, num_partitions, available=None):
        calls.append(topic)
        return 0

    assert choose_partition(spy, "t", b"k", 6, partition=4) == 4
    assert choose_partition(spy, "t", None, 6, partition=2) == 2
    assert calls == []
    assert choose_partition(spy, "t", b"k", 6) == 0
    assert calls == ["t"]


def test_without_an_explicit_partition_the_partitioner_decides():
    partitioner = DefaultPartitioner(random.Random(12))
    assert choose_partition(partitioner, "t", b"foobar", 10) == partition_for_key(b"foobar", 10)
    sticky = choose_partition(partitioner, "t", None, 10, available=[7, 8])
    assert sticky in (7, 8)
    assert choose_partition(partitioner, "t", None, 10, available=[7, 8]) == sticky


@pytest.mark.parametrize("partition", [-1, 6, 100])
def test_an_explicit_partition_outside_the_topic_is_refused(partition):
    with pytest.raises(ValueError, match="invalid partition"):
        choose_partition(DefaultPartitioner(), "t", b"k", 6, partition=partition)


def test_a_custom_partitioners_answer_outside_the_topic_is_refused():
    def broken(topic, key, num_partitions, available=None):
        return num_partitions

    with pytest.raises(ValueError, match="chose partition 6"):
        choose_partition(broken, "t", b"k", 6)
