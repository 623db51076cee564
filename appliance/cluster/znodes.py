"""The cluster's state in ZooKeeper: where each piece lives and what its znode
holds, as Kafka kept it in ZooKeeper mode. Encoding only: no I/O here.

    /brokers/ids/N                          ephemeral   BrokerRegistration
    /brokers/shutting_down/N                ephemeral   empty: N is in controlled shutdown
    /controller                             ephemeral   ControllerRegistration
    /controller_epoch                       persistent  the controller epoch, "N"
    /brokers/topics/T                       persistent  TopicAssignment
    /brokers/topics/T/partitions/P/state    persistent  PartitionState
    /config/topics/T                        persistent  TopicConfig
    /latest_producer_id_block               persistent  ProducerIdBlock

Every znode is JSON with a "version" field, as Kafka's are; a znode this
code cannot read raises ValueError naming it, so a foreign or corrupt
cluster is refused rather than misread. A broker's epoch is the czxid of
its registration znode (new on every registration), and the controller's
epoch is /controller_epoch's content, fenced by that znode's version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

BROKER_IDS = "/brokers/ids"
TOPICS = "/brokers/topics"
CONTROLLER = "/controller"
CONTROLLER_EPOCH = "/controller_epoch"
PRODUCER_ID_BLOCK = "/latest_producer_id_block"
TOPIC_CONFIGS = "/config/topics"
SHUTTING_DOWN = "/brokers/shutting_down"  # Kafka asks its controller; ours watches this
PERSISTENT_PATHS = (BROKER_IDS, TOPICS, TOPIC_CONFIGS, SHUTTING_DOWN)  # made by whoever is first

NO_LEADER = -1  # a partition's leader when no live in-sync replica can take over


def broker_path(broker_id: int) -> str:
    return f"{BROKER_IDS}/{broker_id}"


def topic_path(topic: str) -> str:
    return f"{TOPICS}/{topic}"


def topic_config_path(topic: str) -> str:
    return f"{TOPIC_CONFIGS}/{topic}"


def partition_state_path(topic: str, partition: int) -> str:
    return f"{TOPICS}/{topic}/partitions/{partition}/state"


def _now_ms() -> str:
    return str(time.time_ns() // 1_000_000)


def _load(data: bytes, what: str, fields: tuple[str, ...]) -> dict:
    """The znode's JSON object, with every field in `fields`, or ValueError."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what} is not JSON ({exc}); is this ZooKeeper path Ringlog's?") from None
    missing = [f for f in fields if not isinstance(value, dict) or f not in value]
    if missing:
        raise ValueError(f"{what} lacks {', '.join(missing)}; is this ZooKeeper path Ringlog's?")
    return value


@dataclass(frozen=True)
class BrokerRegistration:
    """A live broker: where clients and followers reach it. `endpoints` lists
    its listeners as Kafka's registration does, the native tcp:// one first
    and its PLAINTEXT:// (Kafka protocol) one when it has one."""

    broker_id: int
    client_endpoint: str  # tcp://HOST:PORT, the native front end
    replication_endpoint: str  # tcp://HOST:PORT, followers fetch here
    timestamp: str = ""
    kafka_endpoint: str = ""  # PLAINTEXT://HOST:PORT as advertised, "" without one

    @property
    def client_host_port(self) -> tuple[str, int]:
        """(host, port) of the native front end, as metadata hands them out."""
        return _host_port(self.client_endpoint)

    @property
    def kafka_host_port(self) -> tuple[str, int] | None:
        """(host, port) of the Kafka listener, None without one."""
        return _host_port(self.kafka_endpoint) if self.kafka_endpoint else None

    def encode(self) -> bytes:
        host, port = self.client_host_port
        endpoints = [self.client_endpoint] + ([self.kafka_endpoint] if self.kafka_endpoint
                                              else [])
        return orjson.dumps({"version": 1, "host": host, "port": port,
                             "endpoints": endpoints,
                             "replication_endpoint": self.replication_endpoint,
                             "timestamp": self.timestamp or _now_ms()})

    @classmethod
    def decode(cls, broker_id: int, data: bytes) -> BrokerRegistration:
        value = _load(data, broker_path(broker_id),
                      ("endpoints", "replication_endpoint", "timestamp"))
        kafka = [e for e in value["endpoints"] if str(e).startswith("PLAINTEXT://")]
        return cls(broker_id, value["endpoints"][0], value["replication_endpoint"],
                   value["timestamp"], kafka[0] if kafka else "")


def _host_port(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.partition("://")[2].rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ControllerRegistration:
    broker_id: int
    timestamp: str = ""

    def encode(self) -> bytes:
        return orjson.dumps({"version": 1, "brokerid": self.broker_id,
                             "timestamp": self.timestamp or _now_ms()})

    @classmethod
    def decode(cls, data: bytes) -> ControllerRegistration:
        value = _load(data, CONTROLLER, ("brokerid",))
        return cls(int(value["brokerid"]), str(value.get("timestamp", "")))


def encode_controller_epoch(epoch: int) -> bytes:
    return str(epoch).encode()


def decode_controller_epoch(data: bytes) -> int:
    try:
        return int(data.decode())
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{CONTROLLER_EPOCH} holds {data[:40]!r}, not an epoch; "
                         "is this ZooKeeper path Ringlog's?") from None


@dataclass(frozen=True)
class TopicAssignment:
    """Each partition's replicas, in preference order (the first is the
    preferred leader)."""

    topic: str
    replicas: tuple[tuple[int, ...], ...]  # replicas[p] for partition p

    def encode(self) -> bytes:
        return orjson.dumps({"version": 1, "partitions": {
            str(p): list(r) for p, r in enumerate(self.replicas)}})

    @classmethod
    def decode(cls, topic: str, data: bytes) -> TopicAssignment:
        value = _load(data, topic_path(topic), ("partitions",))
        partitions = value["partitions"]
        try:
            replicas = tuple(tuple(int(b) for b in partitions[str(p)])
                             for p in range(len(partitions)))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{topic_path(topic)} does not list partitions 0 to "
                             f"{len(partitions) - 1}") from None
        return cls(topic, replicas)


@dataclass(frozen=True)
class PartitionState:
    """Who leads a partition, at which leader epoch, and who is in sync.
    Written by the controller (leader changes) and by the leader (ISR
    changes), each conditionally on the version it read."""

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int

    def encode(self) -> bytes:
        return orjson.dumps({"version": 1, "leader": self.leader,
                             "leader_epoch": self.leader_epoch, "isr": list(self.isr),
                             "controller_epoch": self.controller_epoch})

    @classmethod
    def decode(cls, topic: str, partition: int, data: bytes) -> PartitionState:
        value = _load(data, partition_state_path(topic, partition),
                      ("leader", "leader_epoch", "isr", "controller_epoch"))
        return cls(int(value["leader"]), int(value["leader_epoch"]),
                   tuple(int(b) for b in value["isr"]), int(value["controller_epoch"]))


@dataclass(frozen=True)
class TopicConfig:
    """A topic's configs that differ from the brokers' defaults, as strings."""

    topic: str
    configs: dict[str, str]

    def encode(self) -> bytes:
        return orjson.dumps({"version": 1, "config": dict(sorted(self.configs.items()))})

    @classmethod
    def decode(cls, topic: str, data: bytes) -> TopicConfig:
        value = _load(data, topic_config_path(topic), ("config",))
        if not isinstance(value["config"], dict):
            raise ValueError(f"{topic_config_path(topic)}'s config is not an object")
        return cls(topic, {str(k): str(v) for k, v in value["config"].items()})


@dataclass(frozen=True)
class ProducerIdBlock:
    """The last block of producer ids handed to a broker: [start, end]."""

    broker_id: int
    start: int
    end: int

    def encode(self) -> bytes:
        return orjson.dumps({"version": 1, "broker": self.broker_id,
                             "block_start": str(self.start), "block_end": str(self.end)})

    @classmethod
    def decode(cls, data: bytes) -> ProducerIdBlock:
        value = _load(data, PRODUCER_ID_BLOCK, ("broker", "block_start", "block_end"))
        return cls(int(value["broker"]), int(value["block_start"]), int(value["block_end"]))
