"""Admin: topics, configs, groups, the cluster and status, as Kafka's admin
client offers them.

Requests about topics, configs, the cluster and status go to the first
bootstrap broker that answers (bootstrap.py): any live broker answers for
the whole cluster. Deleting records is one exception: it goes to each
partition's leader, looked up in metadata (again while it moves), as
Kafka's admin client sends DeleteRecords. Groups are the other: a group is
described by its coordinator (coordinator_lookup.py), and each broker lists
only the groups it coordinates, so every live broker is asked and the
answers are merged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from appliance.client.bootstrap import Bootstrap
from appliance.client.connection import DEFAULT_BOOTSTRAP, Connection, raise_for
from appliance.client.coordinator_lookup import CoordinatorLookup
from appliance.client.retry import retry_within
from appliance.client.routes import broker_front_end
from shm.errors import (
    LeaderNotAvailableError,
    NotLeaderOrFollowerError,
    RinglogError,
    UnknownTopicOrPartitionError,
    error_for,
)

# DeleteRecords' errors after which the partition's leader is looked up again
LEADER_MOVED = frozenset({NotLeaderOrFollowerError.name, LeaderNotAvailableError.name})
LEADER_RETRY_S = 0.1


def merge_group_listings(listings: list[list[dict]]) -> list[dict]:
    """One list of groups from each broker's list_groups answer, sorted by id.

    A group is listed once: while its coordinator moves, both the old and
    the new one may name it, and the first listing given (brokers are asked
    in id order) is kept.
    """
    merged: dict[str, dict] = {}
    for listing in listings:
        for group in listing:
            merged.setdefault(group["group_id"], group)
    return [merged[group_id] for group_id in sorted(merged)]


class Admin:
    def __init__(self, bootstrap_servers: str | list[str] = DEFAULT_BOOTSTRAP,
                 request_timeout_ms: int = 30_000):
        self._connection = Bootstrap(bootstrap_servers, Connection)
        self.request_timeout_ms = request_timeout_ms

    def _request(self, api: str, fields: dict | None = None):
        return self._connection.request(api, fields, timeout_ms=self.request_timeout_ms)

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     configs: dict[str, str] | None = None) -> None:
        response = self._request("create_topics", {"topics": [{
            "name": name, "partitions": partitions, "replication_factor": replication_factor,
            "configs": {k: str(v) for k, v in (configs or {}).items()}}]})
        raise_for(response.fields["topics"][0])

    def delete_topic(self, name: str) -> None:
        raise_for(self._request("delete_topics", {"topics": [name]}).fields["topics"][0])

    def list_topics(self) -> list[str]:
        response = self._request("metadata", {"topics": None, "allow_auto_create": False})
        return [t["name"] for t in response.fields["topics"]]

    def describe_topic(self, name: str) -> dict:
        """The topic's replication factor, configs and partitions; each
        partition carries its offsets and size, its owner worker and, as the
        broker gives them, `leader` and `leader_epoch`, `replicas` and `isr`
        (broker ids; leader -1: none)."""
        entry = self._request("describe_topics", {"topics": [name]}).fields["topics"][0]
        raise_for(entry)
        return entry

    def describe_cluster(self) -> dict:
        """The live brokers (`id`, `host`, `port`: their front ends) and the
        controller's broker id, as Kafka's describeCluster: a metadata request
        for no topics. A single node is its own controller."""
        fields = self._request("metadata", {"topics": [], "allow_auto_create": False}).fields
        brokers = [{"id": b["id"], "host": b["host"], "port": b["port"]}
                   for b in fields.get("brokers") or []]
        controller_id = fields.get("controller_id")
        if controller_id is None and len(brokers) == 1:  # a broker from before controller_id
            controller_id = brokers[0]["id"]
        return {"brokers": brokers, "controller_id": -1 if controller_id is None
                else controller_id}

    def alter_configs(self, name: str, configs: dict[str, str],
                      deleted: Sequence[str] = ()) -> dict[str, str]:
        """Set `configs` on topic `name` and send `deleted` back to the
        broker's defaults; the others keep their values. Returns the
        topic's configs now."""
        response = self._request("alter_configs", {
            "topic": name, "configs": {k: str(v) for k, v in configs.items()},
            "deleted": list(deleted)})
        return response.fields["configs"]

    def create_partitions(self, name: str, partitions: int, validate_only: bool = False
                          ) -> None:
        """Grow topic `name` to `partitions` partitions in all (Kafka's
        createPartitions); INVALID_PARTITIONS unless that is more than it has."""
        response = self._request("create_partitions", {
            "topics": [[name, partitions]], "validate_only": validate_only})
        raise_for(response.fields["topics"][0])

    def delete_records(self, topic: str, partition: int, offset: int = -1) -> int:
        """Delete the partition's records below `offset` (-1: below the high
        watermark), as Kafka's deleteRecords; the new low watermark (the log
        start offset). Sent to the partition's leader, found again while it
        moves, within the request timeout."""
        deadline = time.monotonic() + self.request_timeout_ms / 1000
        while True:
            left_ms = max(1, int((deadline - time.monotonic()) * 1000))
            try:
                entry = self._connection.request_to(
                    self._leader_front_end(topic, partition), "delete_records",
                    {"partitions": [[topic, partition, offset]], "timeout_ms": left_ms},
                    timeout_ms=left_ms).fields["partitions"][0]
                raise_for(entry)
                return entry["low_watermark"]
            except RinglogError as exc:
                if exc.name not in LEADER_MOVED or \
                        time.monotonic() + LEADER_RETRY_S > deadline:
                    raise
            time.sleep(LEADER_RETRY_S)

    def _leader_front_end(self, topic: str, partition: int) -> str:
        """The front end of the partition's leader, from one metadata answer."""
        fields = self._request("metadata", {"topics": [topic], "allow_auto_create": False}).fields
        entry = fields["topics"][0]
        if entry.get("error"):
            raise error_for(entry["error"], entry.get("message", ""))
        found = [p for p in entry["partitions"] if p["partition"] == partition]
        if not found:
            raise UnknownTopicOrPartitionError(
                f"partition {partition} of {topic!r} does not exist "
                f"(it has {len(entry['partitions'])})")
        if found[0].get("error"):
            raise error_for(found[0]["error"], found[0].get("message", ""))
        brokers = {b["id"]: b for b in fields.get("brokers") or []}
        leader = brokers.get(found[0]["leader"])
        if leader is None:
            raise LeaderNotAvailableError(f"partition {topic}-{partition} has no leader now")
        return broker_front_end(leader, self._connection.current)

    def status(self, details: bool = False) -> dict:
        """The appliance's liveness (workers, serving, processes) and, with
        `details`, every partition's offsets and every group's lag."""
        return self._request("status", {"details": details}).fields

    def list_groups(self) -> list[dict]:
        """Every consumer group a live broker coordinates or holds offsets
        for: `group_id` and `state`, and what else its coordinator lists.

        Each broker in metadata's `brokers` is asked, in id order; one that
        fails fails the listing (a partial list would hide groups). With one
        broker, the bootstrap broker that answered is the one asked.
        """
        fields = self._request("metadata", {"topics": [], "allow_auto_create": False}).fields
        brokers = sorted(fields.get("brokers") or [], key=lambda b: b["id"])
        if len(brokers) <= 1:
            return merge_group_listings([self._request("list_groups").fields["groups"]])
        bootstrap = self._connection.current
        return merge_group_listings([
            self._connection.request_to(broker_front_end(broker, bootstrap), "list_groups",
                                        timeout_ms=self.request_timeout_ms).fields["groups"]
            for broker in brokers])

    def describe_group(self, group_id: str) -> dict:
        """A group's state, generation, members and assignment, and its
        committed offsets with lag per partition, from its coordinator (found
        again and asked again while it moves, within the request timeout)."""
        lookup = CoordinatorLookup(self._connection, group_id)
        response = retry_within(
            lambda attempt_ms: lookup.request("describe_groups", {"groups": [group_id]},
                                              attempt_ms),
            self.request_timeout_ms)
        return response.fields["groups"][0]

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
