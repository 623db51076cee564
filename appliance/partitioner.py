"""The producer's partitioner: which partition of a topic a record goes to.

This reproduces what Kafka's Java client does, so that a Ringlog producer and a
Java (or kafka-python) producer send a given key to the same partition:

* **Explicit partition.**  A record sent with an explicit partition goes there,
  and the partitioner is not called at all.  That rule belongs to the producer,
  not the partitioner (as in Java's ``KafkaProducer.partition``).
  :func:`choose_partition` implements it together with the range check the
  producer makes: an explicit partition must be ``0 <= partition < num_partitions``.
* **Keyed record** (``key`` is not ``None``; an empty key ``b""`` *is* a key and is
  hashed): ``to_positive(murmur2(key)) % num_partitions``, Java's
  ``Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions``.  Every partition
  of the topic counts, whether or not its leader is currently available, so a
  key always maps to the same partition while the partition count is unchanged.
* **Keyless record** (``key is None``): the *sticky* partition of KIP-480.  All
  keyless records for a topic go to one partition until the producer calls
  :meth:`DefaultPartitioner.on_new_batch` for that topic, when it starts a new
  batch; the next keyless record then goes to a different, randomly chosen
  partition (chosen among the *available* partitions when the caller gives
  them, otherwise among all of them), which becomes the new sticky partition.

A custom partitioner is any callable matching the :class:`Partitioner` protocol,
the same signature as :class:`DefaultPartitioner`; ``on_new_batch`` is optional
and the producer looks it up with ``getattr``.
"""

from __future__ import annotations

import random
import struct
import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = [
    "DefaultPartitioner",
    "Partitioner",
    "choose_partition",
    "murmur2",
    "partition_for_key",
    "to_positive",
]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF

# Keys up to _LANES_FROM - 1 whole words are mixed word by word; longer ones have all
# their words mixed at once, as 64-bit lanes of one big int (see murmur2).
_LANES_FROM = 12

# Per word count n: struct.Struct('<nI'), or for long keys the lane helpers.  Key
# lengths are few in practice; the caches are capped all the same.
_WORDS: dict[int, struct.Struct] = {}
_LANES: dict[int, tuple[struct.Struct, int, int]] = {}
_CACHE_MAX = 1024


def _words(n: int) -> struct.Struct:
    s = struct.Struct(f"<{n}I")
    if len(_WORDS) < _CACHE_MAX:
        _WORDS[n] = s
    return s


def _lanes(n: int) -> tuple[struct.Struct, int, int]:
    """For n words: unpacker of n 64-bit lanes, the mask of each lane's low 32 bits, byte count."""
    lane_mask = int.from_bytes(b"\xff\xff\xff\xff\0\0\0\0" * n, "little")
    e = (struct.Struct(f"<{n}Q"), lane_mask, 8 * n)
    if len(_LANES) < _CACHE_MAX:
        _LANES[n] = e
    return e


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: the 32-bit MurmurHash2 of ``data`` as a signed int.

    Seed ``0x9747b28c``, ``m = 0x5bd1e995``, ``r = 24``; the body is read as
    little-endian 32-bit words and the result is the signed 32-bit value Java
    returns (in ``-2**31 .. 2**31 - 1``).  ``data`` is any bytes-like object of
    unsigned bytes (``bytes``, ``bytearray``, a ``memoryview`` of format ``B``).
    """
    length = len(data)
    m = _M
    mask = _MASK
    h = _SEED ^ length
    n4 = length >> 2
    if n4 < _LANES_FROM:
        if n4:
            for k in (_WORDS.get(n4) or _words(n4)).unpack_from(data):
                k = (k * m) & mask  # k *= m
                # k ^= k >>> r; k *= m; h *= m; h ^= k.  (Masking once after the
                # xor gives the same low 32 bits as masking each product.)
                h = ((h * m) ^ (k ^ (k >> 24)) * m) & mask
    else:
        # Each word's mixing (k *= m; k ^= k >>> r; k *= m) does not depend on h,
        # so do it for all words together: word i goes in bits 64i..64i+31 of one
        # int, whose 32 spare bits per lane take each product's carry, and the
        # lane mask clears them (and what >> 24 brings in from the next lane)
        # before they could reach the next lane.  Only h's chain stays a loop.
        unpack_lanes, lane_mask, nbytes = _LANES.get(n4) or _lanes(n4)
        end = n4 << 2
        spread = bytearray(nbytes)
        spread[0::8] = data[0:end:4]
        spread[1::8] = data[1:end:4]
        spread[2::8] = data[2:end:4]
        spread[3::8] = data[3:end:4]
        x = (int.from_bytes(spread, "little") * m) & lane_mask
        x = (((x ^ (x >> 24)) & lane_mask) * m) & lane_mask
        for k in unpack_lanes.unpack(x.to_bytes(nbytes, "little")):
            h = ((h * m) ^ k) & mask
    tail = length & 3
    if tail:
        i = n4 << 2
        if tail == 3:
            h ^= data[i + 2] << 16
        if tail >= 2:
            h ^= data[i + 1] << 8
        h = ((h ^ data[i]) * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def to_positive(n: int) -> int:
    """Java's ``Utils.toPositive``: clear the sign bit (not ``abs``; ``-2**31`` maps to 0)."""
    return n & 0x7FFFFFFF


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``num_partitions``."""
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be at least 1, not {num_partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


@runtime_checkable
class Partitioner(Protocol):
    """What the producer calls to place a record that has no explicit partition.

    ``partitioner(topic, key, num_partitions, available)`` returns a partition in
    ``range(num_partitions)``:

    * ``topic``: the topic's name;
    * ``key``: the serialized key, or ``None`` for a keyless record (``b""`` is a key);
    * ``num_partitions``: how many partitions the topic has (at least 1);
    * ``available``: the partitions whose leader is currently reachable, or
      ``None`` when the producer does not know; a partitioner may prefer them.

    It is never called for a record with an explicit partition (see
    :func:`choose_partition`).  A partitioner may also define
    ``on_new_batch(topic, prev_partition=None)``; the producer calls it, if
    present, whenever it starts a new batch for ``topic`` (see
    :meth:`DefaultPartitioner.on_new_batch`).  It must be safe to call from
    several threads if the producer is shared between threads.
    """

    def __call__(
        self,
        topic: str,
        key: bytes | None,
        num_partitions: int,
        available: Sequence[int] | None = None,
    ) -> int: ...


class DefaultPartitioner:
    """Kafka's default partitioner: murmur2 for keys, sticky (KIP-480) without.

    ``rng`` is the source of randomness for choosing sticky partitions (a
    ``random.Random``; give a seeded one for reproducible choices).  Instances are
    thread-safe.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._sticky: dict[str, int] = {}
        # Partition to move away from when a topic's sticky partition is next chosen.
        self._leaving: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(
        self,
        topic: str,
        key: bytes | None,
        num_partitions: int,
        available: Sequence[int] | None = None,
    ) -> int:
        if key is not None:
            return partition_for_key(key, num_partitions)
        if num_partitions < 1:
            raise ValueError(f"num_partitions must be at least 1, not {num_partitions}")
        p = self._sticky.get(topic)
        if p is not None and self._usable(p, num_partitions, available):
            return p
        with self._lock:
            p = self._sticky.get(topic)
            if p is not None and self._usable(p, num_partitions, available):
                return p
            p = self._pick(topic, num_partitions, available)
            self._sticky[topic] = p
            return p

    def sticky_partition(self, topic: str) -> int | None:
        """The topic's sticky partition; ``None`` until the next keyless record picks one."""
        return self._sticky.get(topic)

    def on_new_batch(self, topic: str, prev_partition: int | None = None) -> None:
        """The producer is starting a new batch for ``topic``: move off its sticky partition.

        The next keyless record for ``topic`` goes to a different partition,
        chosen at random (among the available ones, if the producer passes them),
        unless only one partition can be chosen.

        ``prev_partition`` is the partition whose batch was completed.  If given
        and it is no longer the topic's sticky partition (another thread has
        already moved it), the call does nothing, as in Java's
        ``StickyPartitionCache.nextPartition``; so concurrent callers that saw
        the same full batch move the topic only once.
        """
        with self._lock:
            current = self._sticky.get(topic)
            if current is None:
                return
            if prev_partition is not None and prev_partition != current:
                return
            del self._sticky[topic]
            self._leaving[topic] = current

    def _usable(self, p: int, num_partitions: int, available: Sequence[int] | None) -> bool:
        if available:
            return p in available
        return p < num_partitions

    def _pick(self, topic: str, num_partitions: int, available: Sequence[int] | None) -> int:
        """A new sticky partition for ``topic``: random, and not the one being left if possible."""
        leaving = self._leaving.pop(topic, None)
        # An empty `available` means no leader is known: fall back to all partitions,
        # as Java does.
        candidates: Sequence[int] = available if available else range(num_partitions)
        n = len(candidates)
        if n == 1:
            return candidates[0]
        while True:
            p = candidates[self._rng.randrange(n)]
            if p != leaving:
                return p


def choose_partition(
    partitioner: Partitioner,
    topic: str,
    key: bytes | None,
    num_partitions: int,
    partition: int | None = None,
    available: Sequence[int] | None = None,
) -> int:
    """The producer's rule: an explicit ``partition`` wins; otherwise ask ``partitioner``.

    An explicit partition is returned as it is, without calling the
    partitioner, after checking it is in ``range(num_partitions)`` (Java's
    producer rejects a negative partition when the record is made and one past
    the topic's partition count before sending).  The partitioner's answer is
    checked the same way, so a faulty custom partitioner fails here rather than
    at the broker.  Raises ``ValueError``.
    """
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be at least 1, not {num_partitions}")
    if partition is None:
        chosen = partitioner(topic, key, num_partitions, available)
        if not 0 <= chosen < num_partitions:
            raise ValueError(
                f"partitioner {partitioner!r} chose partition {chosen} for topic {topic!r},"
                f" which has {num_partitions} partitions"
            )
        return chosen
    if not 0 <= partition < num_partitions:
        raise ValueError(
            f"invalid partition {partition} for topic {topic!r},"
            f" which has {num_partitions} partitions"
        )
    return partition
