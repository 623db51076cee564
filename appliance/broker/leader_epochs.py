"""OffsetForLeaderEpoch for clients: where a leader epoch ended in this
leader's log, so that a consumer that saw an older leader can tell whether
its position is still on the log (KIP-320) after a failover.

Read from the partition's leader-epoch checkpoint, which its worker writes
atomically; the epoch the partition is led at now ends at the log end.
"""

from __future__ import annotations

from appliance.broker import replies as r
from appliance.broker.readers import PartitionReaders
from appliance.broker.requests import OffsetForLeaderEpochRequest
from shm.errors import RinglogError
from shm.leader_epoch import LeaderEpochCache


def offsets_for_leader_epochs(readers: PartitionReaders, request: OffsetForLeaderEpochRequest
                              ) -> r.OffsetForLeaderEpochReply:
    results = []
    for topic, partition, epoch in request.partitions:
        try:
            readers.check_leader(topic, partition)
            position = readers.position(topic, partition)
            if epoch >= position.leader_epoch:
                found = (position.leader_epoch, position.log_end_offset)
            else:
                cache = LeaderEpochCache(readers.directory(topic, partition))
                found = cache.end_offset_for(epoch, position.log_end_offset)
            results.append(r.EpochEndOffset(topic, partition, *found))
        except RinglogError as exc:
            results.append(r.EpochEndOffset(topic, partition, error=exc))
    return r.OffsetForLeaderEpochReply(results)
