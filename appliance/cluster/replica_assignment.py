"""Which brokers hold each partition's replicas, as Kafka assigns them when
racks are not known (AdminUtils' rack-unaware assignment).

Partition p's first replica (its preferred leader) is broker
`(start + p) % n`, so leaders go round the brokers; the others follow it at
a shift that grows by one each time the partitions have gone round once,
so that followers spread too instead of always pairing the same brokers.
`start` is chosen at random per topic by the caller, so topics' leaders do
not all begin on the same broker. Partitions added to a topic later
(CreatePartitions) go on from `first_partition` with the start and shift
of the topic's partition 0, as Kafka's AdminZkClient.addPartitions does.
"""

from __future__ import annotations


def assign_replicas(broker_ids: list[int], partitions: int, replication_factor: int,
                    start: int = 0, shift: int | None = None, first_partition: int = 0
                    ) -> tuple[tuple[int, ...], ...]:
    """Replicas of partitions first_partition..first_partition+partitions-1,
    each a tuple of distinct broker ids.

    Raises ValueError if the replication factor is not between 1 and the
    number of brokers: Kafka's INVALID_REPLICATION_FACTOR.
    """
    brokers = sorted(broker_ids)
    n = len(brokers)
    if not 1 <= replication_factor <= n:
        raise ValueError(f"replication factor {replication_factor} needs between 1 and "
                         f"{n} live brokers; {n} are registered")
    next_shift = start if shift is None else shift
    assignment = []
    for partition in range(first_partition, first_partition + partitions):
        if partition > 0 and partition % n == 0:
            next_shift += 1
        first = (partition + start) % n
        replicas = [brokers[first]]
        for j in range(replication_factor - 1):
            # 1 .. n-1 steps from the first: never the first itself, never twice.
            step = 1 + (next_shift + j) % (n - 1)
            replicas.append(brokers[(first + step) % n])
        assignment.append(tuple(replicas))
    return tuple(assignment)
