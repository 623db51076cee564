"""The Kafka APIs this door serves and at which versions: the table
ApiVersions hands out, defined once.

Only non-flexible versions (KIP-482's tagged fields come with the first
flexible version of each API): every client measured here
(kafka-python 3, librdkafka 2.0-2.16, aiokafka, kcat) negotiates down to
them (../shared/notes/kafka-wire.md). Produce is advertised from v0 though
v0-2 are refused (they predate record batch v2): librdkafka 2.0 stops
compressing when the minimum is 3 (KAFKA-18659), and Kafka 4.0 advertises
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Api:
    key: int
    name: str  # kio's schema name
    min_version: int
    max_version: int
    min_served: int | None = None  # below this the version is advertised but refused

    def serves(self, version: int) -> bool:
        low = self.min_version if self.min_served is None else self.min_served
        return low <= version <= self.max_version


PRODUCE, FETCH, LIST_OFFSETS, METADATA = 0, 1, 2, 3
OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR, JOIN_GROUP, HEARTBEAT = 8, 9, 10, 11, 12
LEAVE_GROUP, SYNC_GROUP, DESCRIBE_GROUPS, LIST_GROUPS = 13, 14, 15, 16
API_VERSIONS, CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS, INIT_PRODUCER_ID = 18, 19, 20, 21, 22
OFFSET_FOR_LEADER_EPOCH, DESCRIBE_CONFIGS, ALTER_CONFIGS = 23, 32, 33
CREATE_PARTITIONS, DELETE_GROUPS, INCREMENTAL_ALTER_CONFIGS = 37, 42, 44

APIS: dict[int, Api] = {api.key: api for api in (
    Api(PRODUCE, "produce", 0, 8, min_served=3),
    Api(FETCH, "fetch", 4, 11),
    Api(LIST_OFFSETS, "list_offsets", 1, 5),
    Api(METADATA, "metadata", 0, 8),
    Api(OFFSET_COMMIT, "offset_commit", 2, 7),
    Api(OFFSET_FETCH, "offset_fetch", 1, 5),
    Api(FIND_COORDINATOR, "find_coordinator", 0, 2),
    Api(JOIN_GROUP, "join_group", 0, 5),
    Api(HEARTBEAT, "heartbeat", 0, 3),
    Api(LEAVE_GROUP, "leave_group", 0, 3),
    Api(SYNC_GROUP, "sync_group", 0, 3),
    Api(DESCRIBE_GROUPS, "describe_groups", 0, 4),
    Api(LIST_GROUPS, "list_groups", 0, 2),
    Api(API_VERSIONS, "api_versions", 0, 2),
    Api(CREATE_TOPICS, "create_topics", 2, 4),
    Api(DELETE_TOPICS, "delete_topics", 1, 3),
    Api(DELETE_RECORDS, "delete_records", 0, 1),
    Api(INIT_PRODUCER_ID, "init_producer_id", 0, 1),
    Api(OFFSET_FOR_LEADER_EPOCH, "offset_for_leader_epoch", 2, 3),
    Api(DESCRIBE_CONFIGS, "describe_configs", 1, 2),
    Api(ALTER_CONFIGS, "alter_configs", 0, 1),
    Api(CREATE_PARTITIONS, "create_partitions", 0, 1),
    Api(DELETE_GROUPS, "delete_groups", 0, 1),
    Api(INCREMENTAL_ALTER_CONFIGS, "incremental_alter_configs", 0, 0),
)}
