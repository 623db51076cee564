"""The consumer: fetch record batches, decode them, hand out messages in order,
as Kafka's KafkaConsumer.

A consumer reads the partitions it is given (`assign`) or all partitions of
the topics it subscribes to. The fetcher (fetcher.py) keeps the positions,
fetches and decodes; with a group_id, the coordinator
(consumer_coordinator.py) joins the group on subscribe(), heartbeats from
poll() and commits, talking to the group's coordinator broker
(coordinator_lookup.py).
"""

from __future__ import annotations

import time

from appliance import protocol
from appliance.client.blocking_connection import BlockingConnection
from appliance.client.bootstrap import Bootstrap
from appliance.client.connection import DEFAULT_BOOTSTRAP, raise_for
from appliance.client.consumer_coordinator import ConsumerCoordinator
from appliance.client.coordinator_lookup import CoordinatorLookup
from appliance.client.fetcher import Fetcher, Message, TopicPartition
from appliance.client.network_client import NetworkClient
from appliance.client.retry import retry_within
from shm.allocator import keep_freed_memory

__all__ = ["Consumer", "Message", "TopicPartition"]


class Consumer:
    """Kafka-style consumer for one thread."""

    def __init__(self, *topics: str, bootstrap_servers: str | list[str] = DEFAULT_BOOTSTRAP,
                 group_id: str | None = None, auto_offset_reset: str = "latest",
                 enable_auto_commit: bool = True, max_poll_records: int = 500,
                 fetch_max_wait_ms: int = 500, fetch_min_bytes: int = 1,
                 max_partition_fetch_bytes: int = 1 << 20, fetch_max_bytes: int = 50 << 20,
                 request_timeout_ms: int = 30_000, session_timeout_ms: int = 10_000,
                 heartbeat_interval_ms: int = 1_000, auto_commit_interval_ms: int = 5_000,
                 partition_assignment_strategy: str = "cooperative-sticky",
                 client_id: str = "ringlog-consumer"):
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError("auto_offset_reset must be 'earliest' or 'latest'")
        self.group_id = group_id
        self.max_poll_records = max_poll_records
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.request_timeout_ms = request_timeout_ms
        keep_freed_memory()  # fetched MiB frames are freed and received again and again
        # Offsets, groups and metadata: to the first bootstrap broker that answers.
        self._connection = Bootstrap(bootstrap_servers, BlockingConnection)
        self._fetcher = Fetcher(
            NetworkClient(bootstrap_servers), self._request, auto_offset_reset=auto_offset_reset,
            fetch_max_wait_ms=fetch_max_wait_ms, fetch_min_bytes=fetch_min_bytes,
            max_partition_fetch_bytes=max_partition_fetch_bytes,
            fetch_max_bytes=fetch_max_bytes, request_timeout_ms=request_timeout_ms)
        # Group requests: to the group's coordinator, found through the bootstrap brokers.
        self._coordinator_lookup = None if group_id is None else CoordinatorLookup(
            self._connection, group_id)
        self._coordinator = None if group_id is None else ConsumerCoordinator(
            self._fetcher, self._group_request, group_id=group_id,
            enable_auto_commit=enable_auto_commit, session_timeout_ms=session_timeout_ms,
            heartbeat_interval_s=heartbeat_interval_ms / 1000,
            auto_commit_interval_s=auto_commit_interval_ms / 1000,
            assignor=partition_assignment_strategy, client_id=client_id)
        if topics:
            self.subscribe(list(topics))

    # --- what to read -------------------------------------------------------------------

    def subscribe(self, topics: list[str]) -> None:
        """Read `topics`: with a group, the partitions the group assigns this
        member; without one, every partition (and nothing is committed)."""
        if self._coordinator is not None:
            self._coordinator.subscribe(topics)
            return
        response = self._request("metadata", {"topics": topics})
        assignment = []
        for entry in response.fields["topics"]:
            raise_for(entry)
            assignment += [(entry["name"], p["partition"]) for p in entry["partitions"]]
        self.assign(assignment)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._fetcher.assign(partitions)

    def assignment(self) -> list[TopicPartition]:
        return list(self._fetcher.assignment)

    # --- positions ------------------------------------------------------------------------

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._fetcher.seek(topic, partition, offset)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._fetcher.reset(list(partitions) or self._fetcher.assignment, protocol.EARLIEST)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        self._fetcher.reset(list(partitions) or self._fetcher.assignment, protocol.LATEST)

    def position(self, topic: str, partition: int) -> int:
        """The offset of the next message poll() will return for the partition."""
        return self._fetcher.position(topic, partition)

    def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's log start offset, as Kafka's beginning_offsets()."""
        return self._fetcher.list_offsets(partitions, protocol.EARLIEST)

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's high watermark (the offset after the last readable
        record), as Kafka's end_offsets()."""
        return self._fetcher.list_offsets(partitions, protocol.LATEST)

    # --- reading --------------------------------------------------------------------------

    def poll(self, timeout_ms: int = 1000, max_records: int | None = None) -> list[Message]:
        """Messages from the assigned partitions, in offset order per partition;
        waits up to `timeout_ms` for the first one."""
        limit = max_records or self.max_poll_records
        deadline = time.monotonic() + timeout_ms / 1000
        fetcher, coordinator = self._fetcher, self._coordinator
        if coordinator is not None:
            coordinator.poll()
        while not fetcher.has_fetched():
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or (coordinator is None and not fetcher.assignment):
                break
            if not fetcher.assignment:
                # A member without partitions (its group's first generation waits
                # out group.initial.rebalance.delay.ms, or the group has more members
                # than partitions) gets them from a heartbeat: wait for the next one
                # rather than return at once, as Kafka's poll() waits out its timeout.
                wait_s = min(remaining_ms / 1000, coordinator.next_heartbeat - time.monotonic())
                if wait_s <= 0:  # not a member, or a release to report at the next poll
                    break
                time.sleep(wait_s)
                coordinator.poll()
                continue
            wait_ms = min(remaining_ms, self.fetch_max_wait_ms)
            if coordinator is not None:  # wake up in time for the next heartbeat
                heartbeat_ms = int((coordinator.next_heartbeat - time.monotonic()) * 1000)
                wait_ms = max(0, min(wait_ms, heartbeat_ms))
            fetcher.fetch(wait_ms)
            if coordinator is not None:
                coordinator.poll()
        return fetcher.fetched_records(limit)

    def __iter__(self):
        while True:
            yield from self.poll()

    # --- the group ------------------------------------------------------------------------

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit the positions of the owned partitions (or `offsets`) for the group.

        A commit from a stale generation is refused (ILLEGAL_GENERATION): we
        heartbeat to learn the current one, then commit again once.
        """
        if self._coordinator is None:
            raise ValueError("commit() needs a group_id")
        self._coordinator.commit(offsets)

    def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset for the partition, or None."""
        if self._coordinator is None:
            return None
        return self._coordinator.committed(topic, partition)

    def _request(self, api: str, fields: dict, timeout_ms: int | None = None
                 ) -> protocol.Response:
        """One request to the bootstrap brokers, retried on retriable errors (a
        partition or the offsets still loading after a restart) until the
        request timeout."""
        return retry_within(
            lambda attempt_ms: self._connection.request(api, fields, timeout_ms=attempt_ms),
            timeout_ms or self.request_timeout_ms)

    def _group_request(self, api: str, fields: dict, timeout_ms: int | None = None,
                       attempt_timeout_ms: int | None = None) -> protocol.Response:
        """One request to the group's coordinator, retried as `_request` is; an
        attempt that finds the coordinator moved, unavailable or silent makes
        the next one find it again (coordinator_lookup.py)."""
        assert self._coordinator_lookup is not None
        lookup = self._coordinator_lookup
        return retry_within(lambda attempt_ms: lookup.request(api, fields, attempt_ms),
                            timeout_ms or self.request_timeout_ms, attempt_timeout_ms)

    def close(self) -> None:
        """Commit (with auto-commit on) and leave the group, so it rebalances at once."""
        try:
            if self._coordinator is not None:
                self._coordinator.close()
        finally:
            self._fetcher.close()
            self._connection.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
