"""The verdict on a fault run: did the cluster keep every promise it made?

    report = check(history, {
        "broker-1": {0: PartitionRead([(0, "w-0"), (1, "w-1")], high_watermark=2)},
        "broker-2": {0: [(0, "w-0"), (1, "w-1")]},      # a plain list: no high watermark
        "consumer": {0: [(0, "w-0"), (1, "w-1")]},
    })
    assert report.ok, report.summary()

`reads` holds, per reader (a replica's log read from disk, or a consumer),
per partition, every (offset, value) it read from offset 0 to its end, after
the faults healed and the cluster quiesced. A partition a reader does not
list was not read by it and is not held against it; an empty list is a read
that found nothing.

What counts against the cluster, Jepsen's Kafka checks restated for one log:

- lost: an acknowledged write (`ok`) not at its acknowledged partition and
  offset in some reader that read that partition (missing, or elsewhere).
  Every reader is held to every ack, so leave out a replica that is
  legitimately still catching up.
- duplicated: a value read more than once within one reader.
- divergent: an offset holding two different values across readers (or
  twice in one). With a reader's high watermark given, only its offsets below
  the watermark take part: above it a follower may hold an unacknowledged
  tail that truncation will remove, which is not a fault.
- phantom: a write recorded as `fail` (definitely not appended) that a reader
  shows.
- order violations: two writes one producer process invoked one after the
  other to the same partition, both acked, whose acked offsets do not
  increase in invocation order.

`info` writes, and writes never completed, may or may not appear: the report
counts how many did (`recovered`, Jepsen's word) and does not judge them.
Values no history entry wrote (`foreign`) are counted for the reader to
judge but do not fail the run, since a topic may hold records from before it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from loadtest.fault_history import Entry, History, Operation

EXAMPLES = 5  # examples kept per kind of anomaly


@dataclass(frozen=True)
class PartitionRead:
    """What one reader read of one partition, and its high watermark if known."""

    records: Sequence[tuple[int, str]]
    high_watermark: int | None = None


Reads = Mapping[str, Mapping[int, PartitionRead | Sequence[tuple[int, str]]]]


@dataclass
class Anomalies:
    """How many of one kind were found, and the first few, described."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)


@dataclass
class Report:
    acknowledged: int
    failed: int
    indeterminate: int  # info, plus invocations never completed
    recovered: int      # indeterminate writes some reader shows
    lost: Anomalies
    duplicated: Anomalies
    divergent: Anomalies
    phantom: Anomalies
    order_violations: Anomalies
    foreign: Anomalies  # informational: values no entry of the history wrote
    readers: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.lost.count or self.duplicated.count or self.divergent.count
                    or self.phantom.count or self.order_violations.count)

    def summary(self) -> str:
        """One paragraph: the verdict, the counts, and the first example of each anomaly."""
        verdict = "valid" if self.ok else "INVALID"
        parts = [
            f"{verdict}: {self.acknowledged} acknowledged, {self.failed} failed and "
            f"{self.indeterminate} indeterminate writes checked against "
            f"{len(self.readers)} reads ({', '.join(self.readers) or 'none'});",
            f"{self.lost.count} lost, {self.duplicated.count} duplicated, "
            f"{self.divergent.count} divergent offsets, {self.phantom.count} phantom, "
            f"{self.order_violations.count} order violations;",
            f"{self.recovered} of the {self.indeterminate} indeterminate writes are visible",
        ]
        if self.foreign.count:
            parts[-1] += f"; {self.foreign.count} values read that no operation wrote"
        parts[-1] += "."
        for name, found in (("lost", self.lost), ("duplicated", self.duplicated),
                            ("divergent", self.divergent), ("phantom", self.phantom),
                            ("order", self.order_violations)):
            if found.examples:
                parts.append(f"First {name}: {found.examples[0]}.")
        return " ".join(parts)


def _partition_read(read: PartitionRead | Sequence[tuple[int, str]]) -> PartitionRead:
    return read if isinstance(read, PartitionRead) else PartitionRead(read)


def check(history: History | Iterable[Entry], reads: Reads) -> Report:
    """Judge a history against what the readers read. Pure: reads nothing else."""
    ops = [e for e in history if isinstance(e, Operation)]
    invoked: dict[int, Operation] = {}
    completion: dict[int, Operation] = {}
    for op in ops:
        (invoked if op.type == "invoke" else completion)[op.id] = op
    if orphans := sorted(completion.keys() - invoked.keys()):
        raise ValueError(f"operations {orphans[:5]} complete without an invocation")
    by_value: dict[str, Operation] = {}
    for op in invoked.values():
        if op.value in by_value:
            raise ValueError(f"value {op.value!r} was written twice: values must be unique")
        by_value[op.value] = op
    acked = {i: c for i, c in completion.items() if c.type == "ok"}
    failed = {i: c for i, c in completion.items() if c.type == "fail"}
    indeterminate = [i for i in invoked if i not in acked and i not in failed]

    normalised = {reader: {p: _partition_read(r) for p, r in partitions.items()}
                  for reader, partitions in reads.items()}
    # where each reader saw each value: reader -> value -> [(partition, offset)]
    seen: dict[str, dict[str, list[tuple[int, int]]]] = {}
    for reader, partitions in normalised.items():
        places: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for partition, read in sorted(partitions.items()):
            for offset, value in read.records:
                places[value].append((partition, offset))
        seen[reader] = places
    visible = {value for places in seen.values() for value in places}

    lost = Anomalies()
    for op in sorted(acked.values(), key=lambda c: (c.partition, c.offset)):
        for reader, partitions in normalised.items():
            if op.partition not in partitions:
                continue
            places = seen[reader].get(op.value, [])
            if (op.partition, op.offset) not in places:
                where = ("missing" if not places
                         else "at " + ", ".join(f"{p}/{o}" for p, o in places))
                lost.add(f"{op.value} acked at {op.partition}/{op.offset}, "
                         f"{where} in {reader}")
                break

    duplicated = Anomalies()
    duplicates: dict[str, list[str]] = defaultdict(list)  # value -> its descriptions
    for reader, places in seen.items():
        for value, where in places.items():
            if len(where) > 1:
                duplicates[value].append(
                    f"{reader} at " + ", ".join(f"{p}/{o}" for p, o in where))
    for value, descriptions in sorted(duplicates.items()):
        duplicated.add(f"{value} read more than once: {'; '.join(descriptions)}")

    divergent = Anomalies()
    # (partition, offset) -> value -> readers holding it there, below their watermarks
    holders: dict[tuple[int, int], dict[str, list[str]]] = defaultdict(
        lambda: defaultdict(list))
    for reader, partitions in normalised.items():
        for partition, read in partitions.items():
            for offset, value in read.records:
                if read.high_watermark is None or offset < read.high_watermark:
                    holders[(partition, offset)][value].append(reader)
    for (partition, offset), values in sorted(holders.items()):
        if len(values) > 1:
            divergent.add(f"{partition}/{offset} holds " + ", ".join(
                f"{value} in {'+'.join(names)}" for value, names in values.items()))

    phantom = Anomalies()
    for op in sorted(failed.values(), key=lambda c: c.index):
        if op.value in visible:
            where = "; ".join(
                f"{reader} at " + ", ".join(f"{p}/{o}" for p, o in places[op.value])
                for reader, places in seen.items() if op.value in places)
            phantom.add(f"{op.value} failed ({op.error}) but is read: {where}")

    order_violations = Anomalies()
    # Writes a process invoked in sequence to one partition: each acked offset
    # must exceed the one before it. Unacked writes in between do not break the
    # sequence: the acked ones still went to the log in invocation order.
    sequences: dict[tuple[str, int], list[Operation]] = defaultdict(list)
    for op in sorted(acked.values(), key=lambda c: invoked[c.id].index):
        sequences[(op.process, op.partition)].append(op)
    for (process, partition), sequence in sorted(sequences.items()):
        for before, after in itertools.pairwise(sequence):
            if after.offset <= before.offset:
                order_violations.add(
                    f"{process} wrote {before.value} then {after.value} to partition "
                    f"{partition}, acked at offsets {before.offset} then {after.offset}")

    foreign = Anomalies()
    for value in sorted(visible - by_value.keys()):
        foreign.add(value)

    return Report(
        acknowledged=len(acked),
        failed=len(failed),
        indeterminate=len(indeterminate),
        recovered=sum(1 for i in indeterminate if invoked[i].value in visible),
        lost=lost,
        duplicated=duplicated,
        divergent=divergent,
        phantom=phantom,
        order_violations=order_violations,
        foreign=foreign,
        readers=tuple(normalised),
    )
