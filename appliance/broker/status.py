"""Status: liveness and, with details, every partition's offsets and log
bytes and every group's lag: what `ringlog status` prints and /metrics exposes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appliance.broker import replies as r
from appliance.broker.groups import Groups
from appliance.broker.readers import PartitionReaders
from appliance.broker.requests import StatusRequest
from appliance.broker.worker_calls import WorkerCalls
from appliance.metadata import NOT_HOSTED, Metadata
from appliance.metrics import log_size_bytes
from shm.errors import RinglogError

ProcessTable = Callable[[], list[dict[str, Any]]]


class Status:
    def __init__(self, metadata: Metadata, readers: PartitionReaders, groups: Groups,
                 calls: WorkerCalls, process_table: ProcessTable):
        self.metadata = metadata
        self.readers = readers
        self.groups = groups
        self.calls = calls
        self.process_table = process_table  # the supervisor's processes: pid, RSS, CPU
        self.cluster: Any = None  # ReplicaRoles in a cluster: each partition's role
        # This broker's role in its cluster (ClusterMember.status), None on a single node.
        self.cluster_role: Callable[[], dict[str, Any]] | None = None

    @property
    def serving(self) -> bool:
        """Every worker is connected and has opened its partitions."""
        return len(self.calls.ready) == self.metadata.num_workers and not self.readers.opening

    def status(self, request: StatusRequest) -> r.StatusReply:
        workers = sorted(self.calls.ready)
        role = None if self.cluster_role is None else self.cluster_role()
        if not request.details:
            return r.StatusReply(workers, len(self.metadata.topics), self.serving,
                                 self.process_table(), cluster=role)
        return r.StatusReply(workers, len(self.metadata.topics), self.serving,
                             self.process_table(), self._partitions(), self.groups.status(),
                             role)

    def _partitions(self) -> list[dict[str, Any]]:
        """Offsets and log bytes of every partition, from the control blocks."""
        partitions = []
        for name in sorted(self.metadata.topics):
            for p, owner in enumerate(self.metadata.topics[name].owners):
                if owner == NOT_HOSTED:
                    continue
                entry: dict[str, Any] = {"topic": name, "partition": p, "owner_worker": owner}
                if self.cluster is not None:
                    leader, _, replicas, isr = self.cluster.leader(name, p)
                    role = "leader" if leader == self.cluster.broker_id else \
                        "offline" if leader < 0 else "follower"
                    entry.update(role=role, leader=leader, replicas=replicas, isr=isr)
                    if role == "follower":
                        entry["follower_lag"] = self.cluster.follower_lag.get((name, p))
                try:
                    offsets, position = self.readers.offsets(name, p)
                except RinglogError as exc:
                    entry.update(error=exc.name, message=str(exc))
                else:
                    entry.update(error=None, log_start_offset=offsets.log_start_offset,
                                 log_end_offset=offsets.log_end_offset,
                                 high_watermark=offsets.high_watermark,
                                 log_bytes=log_size_bytes(self.readers.directory(name, p),
                                                          position))
                partitions.append(entry)
        return partitions
