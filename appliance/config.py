"""The appliance's configuration: Kafka's server.properties format and key names.

Every setting is defined once, in SETTINGS; the loader, the validation, the
shipped config/server.properties (render_properties) and the reference table
in docs/configuration.md (render_reference_table) all come from it.

Sources, later wins::

    built-in defaults < properties file < RINGLOG_* environment < --override KEY=VALUE

An unknown key or a bad value raises ConfigError, whose message is one line
naming the key, where it came from and the fix (the nearest valid key).

The three retention keys follow Kafka: of log.retention.ms,
log.retention.minutes and log.retention.hours, the first one that is set
(from any source) decides log.retention.ms; the built-in default is one week.

Topic-level configs (retention.ms, segment.bytes, ...) take Kafka's names; each
defaults to a broker setting (TOPIC_CONFIG_BROKER_KEYS, derived from
TOPIC_SETTINGS). ServerConfig.log_config merges a topic's validated configs
over those defaults into a shm LogConfig. The storage settings take their
defaults and bounds from LogConfig's fields, where they are declared once
(see docs/configuration.md, "Where the storage defaults are defined").

Regenerate the shipped files after changing SETTINGS::

    python -m appliance.config > config/server.properties
    python -m appliance.config --markdown   # the table in docs/configuration.md
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from shm.partition_log import LogConfig

__all__ = [
    "DYNAMIC_KEYS",
    "ENV_PREFIX",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "TOPIC_CONFIG_BROKER_KEYS",
    "TOPIC_CONFIG_KEYS",
    "TOPIC_SETTINGS",
    "ConfigError",
    "ServerConfig",
    "Setting",
    "default_config",
    "env_var_name",
    "load_config",
    "parse_properties",
    "render_properties",
    "render_reference_table",
    "render_topic_table",
    "validate_topic_config_names",
    "validate_topic_configs",
]

ENV_PREFIX = "RINGLOG_"
DOCS_HINT = "docs/configuration.md lists every setting"

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
TYPES = ("int", "long", "string", "boolean")
_INTEGER = re.compile(r"[+-]?[0-9]+")

MINUTE_MS = 60 * 1000
HOUR_MS = 60 * MINUTE_MS


class ConfigError(Exception):
    """A setting that stops start-up. str(e) is one line: the key, where, the fix."""

    def __init__(self, message: str, key: str | None = None):
        one_line = " ".join(message.replace("\r", "\n").split("\n"))
        super().__init__(one_line)
        self.key = key


class _BadValue(ValueError):
    """Raised by Setting.parse; the caller adds the key and where it came from."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    """One configuration key.

    type is one of "int" (32-bit), "long" (64-bit), "string", "boolean".
    default is the typed value, None for "unset", or a callable computing a
    default that depends on the machine (then default_text describes it).
    minimum/maximum bound integers, choices enumerates strings, and check
    returns a reason (str) when a parsed value is unacceptable, else None.
    """

    name: str
    type: str
    default: Any
    doc: str
    dynamic: bool = False
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    expects: str | None = None  # how a valid value looks, for messages and docs
    group: str = ""
    default_text: str | None = None  # the default in words, when it is not a value
    example: str | None = None  # a valid value to show when the default will not do
    commented: bool = False  # render_properties leaves it commented out at its default
    log_field: str | None = None  # the shm LogConfig field it sets, which owns default and bounds
    broker_key: str | None = None  # a topic config's default comes from this broker setting

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"setting {self.name}: type {self.type!r} is not one of {TYPES}")

    @property
    def machine_dependent(self) -> bool:
        return callable(self.default)

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def expectation(self) -> str:
        """How a valid value looks, in words: 'an integer >= 1', 'true or false'."""
        if self.expects:
            return self.expects
        if self.type == "boolean":
            return "true or false"
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type in ("int", "long"):
            low, high = self.bounds()
            if self.minimum is not None and self.maximum is not None:
                return f"an integer in [{low}, {high}]"
            if self.minimum is not None:
                return f"an integer >= {low}"
            if self.maximum is not None:
                return f"an integer <= {high}"
            return "an integer"
        return "a string"

    def bounds(self) -> tuple[int, int]:
        low, high = (INT_MIN, INT_MAX) if self.type == "int" else (LONG_MIN, LONG_MAX)
        if self.minimum is not None:
            low = max(low, self.minimum)
        if self.maximum is not None:
            high = min(high, self.maximum)
        return low, high

    def example_text(self) -> str:
        if self.example is not None:
            return self.example
        value = self.default_value()
        return format_value(value) if value is not None else ""

    def parse(self, raw: str) -> Any:
        """The typed value of raw (whitespace around it ignored), or _BadValue."""
        text = raw.strip()
        value: Any
        if self.type == "boolean":
            lowered = text.lower()
            if lowered not in ("true", "false"):
                raise _BadValue(self._expected())
            value = lowered == "true"
        elif self.type in ("int", "long"):
            if not _INTEGER.fullmatch(text):
                raise _BadValue(self._expected())
            value = int(text)
            low, high = self.bounds()
            if value > high and self.maximum is None:
                raise _BadValue(f"expected an integer <= {high} (the largest {self.type})")
            if not low <= value <= high:
                raise _BadValue(self._expected())
        else:
            value = text
            if self.choices and value not in self.choices:
                raise _BadValue(self._expected())
        if self.check is not None:
            reason = self.check(value)
            if reason:
                raise _BadValue(reason)
        return value

    def _expected(self) -> str:
        example = self.example_text()
        if example:
            return f"expected {self.expectation()}, e.g. {self.name}={example}"
        return f"expected {self.expectation()}"


def format_value(value: Any) -> str:
    """A typed value as it is written in a properties file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _listener_map(value: str) -> dict[str, tuple[str, int]]:
    """A validated listener list's entries by scheme."""
    found = split_listeners(value)
    assert not isinstance(found, str), found  # validated when loaded
    return found


def _split_host_port(text: str) -> tuple[str, int] | None:
    """HOST:PORT (IPv6 in brackets) -> (host, port), or None if malformed."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):([0-9]{1,5})", text)
    if not match:
        return None
    host, port = match.group(1), int(match.group(2))
    if port > 65535:
        return None
    return host.strip("[]"), port


def _tcp_listener(value: str) -> str | None:
    if not value.startswith("tcp://") or _split_host_port(value[len("tcp://") :]) is None:
        return "expected tcp://HOST:PORT with a port in [0, 65535], e.g. tcp://127.0.0.1:7092"
    return None


# listeners' schemes, as Kafka names a listener's security protocol: the native
# ZeroMQ door and Kafka's own protocol in plain text.
NATIVE_SCHEME, KAFKA_SCHEME = "tcp", "PLAINTEXT"


def split_listeners(value: str) -> dict[str, tuple[str, int]] | str:
    """Kafka's listener list, "SCHEME://HOST:PORT,..." -> {scheme: (host, port)},
    or the reason it is malformed. One entry per scheme: Ringlog serves one
    native door and at most one Kafka door per broker."""
    found: dict[str, tuple[str, int]] = {}
    for entry in (e.strip() for e in value.split(",")):
        scheme, sep, address = entry.partition("://")
        parsed = _split_host_port(address) if sep else None
        if scheme not in (NATIVE_SCHEME, KAFKA_SCHEME) or parsed is None:
            return (f"{entry!r} is not tcp://HOST:PORT or PLAINTEXT://HOST:PORT (port in "
                    "[0, 65535]), e.g. tcp://127.0.0.1:7092,PLAINTEXT://127.0.0.1:9092")
        if scheme in found:
            return f"two {scheme}:// entries; give one native and at most one PLAINTEXT listener"
        found[scheme] = parsed
    return found


def _listeners(value: str) -> str | None:
    found = split_listeners(value)
    if isinstance(found, str):
        return found
    if NATIVE_SCHEME not in found:
        return ("no tcp://HOST:PORT entry: the native door (ringlog's CLI and client) needs "
                "one, e.g. tcp://127.0.0.1:7092,PLAINTEXT://127.0.0.1:9092")
    return None


def _advertised_listeners(value: str) -> str | None:
    if value == "":
        return None  # advertise what listeners binds
    found = split_listeners(value)
    if isinstance(found, str):
        return found
    if any(host in ("0.0.0.0", "::", "") for host, _ in found.values()):
        return "a wildcard address cannot be advertised: name the host clients should reach"
    if any(port == 0 for _, port in found.values()):
        return "port 0 cannot be advertised: name the port clients should reach"
    return None


def _http_listener(value: str) -> str | None:
    if value == "":
        return None  # empty: no HTTP endpoint at all
    if "://" in value:
        return "expected HOST:PORT without a scheme, e.g. 127.0.0.1:7094"
    if _split_host_port(value) is None:
        return "expected HOST:PORT with a port in [0, 65535], e.g. 127.0.0.1:7094"
    return None


def _log_dirs(value: str) -> str | None:
    entries = [entry.strip() for entry in value.split(",")]
    if not value or any(not entry for entry in entries):
        return "expected one directory or a comma-separated list, e.g. log.dirs=/var/lib/ringlog"
    return None


def _cleanup_policy(value: str) -> str | None:
    policies = [policy.strip() for policy in value.split(",")]
    if "compact" in policies:
        return "log compaction is not supported by Ringlog; use cleanup.policy=delete"
    if policies != ["delete"]:
        return "expected delete (the only cleanup policy Ringlog supports)"
    return None


def _cpu_count() -> int:
    return os.cpu_count() or 1


_RETENTION_RULE = (
    "Of log.retention.ms, log.retention.minutes and log.retention.hours the first one "
    "set wins, as in Kafka."
)

def _log_setting(name: str, type: str, log_field: str, doc: str, **kwargs: Any) -> Setting:
    """A setting of the storage engine: its default and bounds are LogConfig's
    (shm.partition_log), declared there once, so the two cannot drift."""
    bounds = LogConfig.bounds_of(log_field)
    return Setting(
        name, type, LogConfig.default_of(log_field), doc,
        minimum=bounds.minimum, maximum=bounds.maximum, choices=bounds.choices,
        log_field=log_field, **kwargs,
    )


SETTINGS: tuple[Setting, ...] = (
    # Server basics
    Setting(
        "broker.id", "int", 0,
        "The id of this broker, unique within a cluster. A single node keeps 0.",
        minimum=0, group="Server basics",
    ),
    Setting(
        "num.workers", "int", _cpu_count,
        "Partition worker processes the supervisor forks. Each partition is owned by "
        "exactly one worker.",
        minimum=1, maximum=1024, group="Server basics",
        default_text="the number of CPUs", example="4", commented=True,
    ),
    Setting(
        "zookeeper.connect", "string", "",
        "ZooKeeper connection string (host:port[,host:port...][/chroot]) for a cluster of "
        "several hosts. Empty on a single node.",
        group="Server basics", example="127.0.0.1:2181", commented=True,
    ),
    # Listeners
    Setting(
        "listeners", "string", "tcp://127.0.0.1:7092,PLAINTEXT://127.0.0.1:9092",
        "Where clients connect, as Kafka's comma-separated listener list: tcp://HOST:PORT is "
        "the native ZeroMQ front end (ringlog's CLI and client), PLAINTEXT://HOST:PORT "
        "speaks Kafka's protocol (kafka-python, librdkafka, kcat, Kafka's tools). Use "
        "0.0.0.0 as HOST to accept clients from other hosts.",
        check=_listeners, expects="tcp://HOST:PORT[,PLAINTEXT://HOST:PORT]", group="Listeners",
    ),
    Setting(
        "advertised.listeners", "string", "",
        "What metadata hands clients for each listener, same syntax as listeners; empty "
        "advertises the listeners' own addresses (set it when clients reach this host by "
        "another name, or when listeners binds 0.0.0.0).",
        check=_advertised_listeners, expects="empty or SCHEME://HOST:PORT,...",
        group="Listeners", example="tcp://broker1.example:7092,PLAINTEXT://broker1.example:9092",
        commented=True,
    ),
    Setting(
        "socket.request.max.bytes", "int", 104_857_600,
        "The largest request the Kafka listener reads; a longer frame closes its "
        "connection, as Kafka does.",
        minimum=1024, group="Listeners",
    ),
    Setting(
        "replication.listener", "string", "tcp://127.0.0.1:7093",
        "Where the other brokers of a cluster fetch this broker's partitions, "
        "tcp://HOST:PORT.",
        check=_tcp_listener, expects="tcp://HOST:PORT", group="Listeners",
    ),
    Setting(
        "http.listener", "string", "127.0.0.1:7094",
        "HOST:PORT of the HTTP endpoint that serves /metrics (Prometheus), /healthz and "
        "/readyz. Empty turns the endpoint off.",
        check=_http_listener, expects="HOST:PORT or empty", group="Listeners",
    ),
    # Replication: read in cluster mode (zookeeper.connect set), which is being
    # built (docs/architecture.md, "Cluster mode"); a single node ignores them.
    Setting(
        "zookeeper.session.timeout.ms", "int", 18_000,
        "How long ZooKeeper keeps a silent broker's session: a broker that dies is "
        "noticed, and its partitions get new leaders, this long after. Below 2000 the "
        "brokers of a busy two-core host lose their sessions while alive.",
        minimum=1000, group="Replication",
    ),
    Setting(
        "unclean.leader.election.enable", "boolean", False,
        "Let a replica that is not in sync lead when no in-sync replica is alive: the "
        "partition stays available and loses what the replica lacked. Topic config: "
        "unclean.leader.election.enable.",
        group="Replication",
    ),
    Setting(
        "replica.lag.time.max.ms", "int", 30_000,
        "A follower that has not caught up with its leader for this long leaves the ISR.",
        minimum=100, group="Replication",
    ),
    Setting(
        "replica.fetch.wait.max.ms", "int", 500,
        "How long a follower's fetch waits at the leader for new records. Keep it below "
        "replica.lag.time.max.ms.",
        minimum=0, group="Replication",
    ),
    Setting(
        "replica.fetch.max.bytes", "int", 1 << 20,
        "Bytes a follower asks per partition per fetch; a larger first batch is still "
        "sent whole.",
        minimum=1024, group="Replication",
    ),
    Setting(
        "controlled.shutdown.enable", "boolean", True,
        "On SIGTERM, move this broker's leaderships to other in-sync replicas before "
        "stopping, so that producers do not wait out a failover.",
        group="Replication",
    ),
    # Log basics
    Setting(
        "log.dirs", "string", "/var/lib/ringlog",
        "Directory that holds the partition logs, topic metadata and committed offsets. "
        "A comma-separated list is accepted as in Kafka; Ringlog uses the first entry.",
        check=_log_dirs, expects="a directory", group="Log basics",
    ),
    Setting(
        "num.partitions", "int", 1,
        "Partitions of a topic created without a partition count, including auto-created "
        "topics.",
        minimum=1, group="Log basics",
    ),
    Setting(
        "default.replication.factor", "int", 1,
        "Replicas of a topic created without a replication factor. It cannot exceed the "
        "number of brokers (1 on a single node).",
        minimum=1, group="Log basics",
    ),
    Setting(
        "min.insync.replicas", "int", 1,
        "With acks=all, the number of in-sync replicas that must hold a batch before it is "
        "acknowledged. Topic config: min.insync.replicas.",
        minimum=1, group="Log basics",
    ),
    Setting(
        "auto.create.topics.enable", "boolean", True,
        "Create a topic, with num.partitions partitions, on the first produce or metadata "
        "request that names it.",
        dynamic=True, group="Log basics",
    ),
    Setting(
        "delete.topic.enable", "boolean", True,
        "Allow deleting topics. When false, a delete request is refused.",
        dynamic=True, group="Log basics",
    ),
    # Segments and retention
    _log_setting(
        "log.segment.bytes", "int", "segment_bytes",
        "Size at which a partition's active segment is closed and a new one begins. Topic "
        "config: segment.bytes.",
        group="Log segments and retention",
    ),
    _log_setting(
        "log.roll.ms", "long", "segment_ms",
        "Age after which the active segment is closed even if it is not full. Topic "
        "config: segment.ms.",
        group="Log segments and retention",
    ),
    _log_setting(
        "log.index.interval.bytes", "int", "index_interval_bytes",
        "Bytes of records between two entries of a segment's offset and time indexes. "
        "Topic config: index.interval.bytes.",
        group="Log segments and retention",
    ),
    Setting(
        "log.retention.hours", "int", 168,
        "Hours a closed segment is kept before it is deleted; -1 keeps segments "
        "forever. " + _RETENTION_RULE,
        dynamic=True, minimum=-1, group="Log segments and retention",
    ),
    Setting(
        "log.retention.minutes", "int", None,
        "Minutes a closed segment is kept; -1 keeps segments forever. Unset by "
        "default. " + _RETENTION_RULE,
        dynamic=True, minimum=-1, group="Log segments and retention",
        default_text="unset", example="10080", commented=True,
    ),
    _log_setting(
        "log.retention.ms", "long", "retention_ms",
        "Milliseconds a closed segment is kept; -1 keeps segments forever. Its value is "
        "the retention in force, whichever of the three keys set it. Topic config: "
        "retention.ms.",
        dynamic=True, group="Log segments and retention", commented=True,
    ),
    _log_setting(
        "log.retention.bytes", "long", "retention_bytes",
        "Size a partition may reach before its oldest closed segments are deleted; -1 "
        "means no size limit. Topic config: retention.bytes.",
        dynamic=True, group="Log segments and retention",
    ),
    Setting(
        "log.retention.check.interval.ms", "long", 300_000,
        "How often every partition's retention is checked.",
        dynamic=True, minimum=1, group="Log segments and retention",
    ),
    # Flush policy
    _log_setting(
        "log.flush.policy", "string", "flush_policy",
        "When appended records are made durable (fdatasync). batch: once for everything "
        "appended in a tick, and acknowledgements wait for it (group commit); interval: "
        "every log.flush.interval.ms; os: left to the page cache, as Kafka does by "
        "default. Topic config: flush.policy.",
        group="Log flush policy",
    ),
    _log_setting(
        "log.flush.interval.ms", "long", "flush_interval_ms",
        "Flush period of the interval policy. Topic config: flush.ms.",
        dynamic=True, group="Log flush policy",
    ),
    # Requests
    _log_setting(
        "message.max.bytes", "int", "max_batch_bytes",
        "Largest record batch accepted, in bytes (Kafka's default: 1 MiB plus 12 bytes of "
        "header). Topic config: max.message.bytes.",
        dynamic=True, group="Requests",
    ),
    Setting(
        "queued.max.requests", "int", 500,
        "Requests the front end queues for the workers before it stops reading from "
        "clients.",
        minimum=1, group="Requests",
    ),
    # Consumer groups and offsets
    Setting(
        "group.min.session.timeout.ms", "int", 6000,
        "Smallest session timeout a consumer group member may ask for.",
        minimum=0, group="Consumer groups and offsets",
    ),
    Setting(
        "group.max.session.timeout.ms", "int", 1_800_000,
        "Largest session timeout a consumer group member may ask for.",
        minimum=0, group="Consumer groups and offsets",
    ),
    Setting(
        "group.initial.rebalance.delay.ms", "int", 3000,
        "How long the first generation of an empty group waits for more members "
        "before partitions are assigned, so consumers started together share them; "
        "each new member extends the wait by as much, up to the members' largest "
        "session timeout. 0 assigns at the first join.",
        minimum=0, group="Consumer groups and offsets",
    ),
    Setting(
        "offsets.topic.num.partitions", "int", 8,
        "Partitions of the internal __consumer_offsets topic; fixed once the topic exists.",
        minimum=1, group="Consumer groups and offsets",
    ),
    Setting(
        "offsets.topic.replication.factor", "int", 3,
        "Replicas of __consumer_offsets in a cluster, which creates it at the first "
        "coordinator lookup once this many brokers are live (a single node keeps one).",
        minimum=1, group="Consumer groups and offsets",
    ),
    Setting(
        "offsets.retention.minutes", "int", 10080,
        "Minutes the committed offsets of a group without members are kept.",
        minimum=1, group="Consumer groups and offsets",
    ),
)

SETTINGS_BY_NAME: Mapping[str, Setting] = MappingProxyType({s.name: s for s in SETTINGS})
DYNAMIC_KEYS: frozenset[str] = frozenset(s.name for s in SETTINGS if s.dynamic)
_RETENTION_KEYS = ("log.retention.ms", "log.retention.minutes", "log.retention.hours")


def env_var_name(key: str) -> str:
    """The environment variable that sets key: log.dirs -> RINGLOG_LOG_DIRS."""
    return ENV_PREFIX + key.replace(".", "_").upper()


# --------------------------------------------------------------------------- topic configs


def _topic_setting(name: str, broker_key: str, doc: str) -> Setting:
    broker = SETTINGS_BY_NAME[broker_key]
    return Setting(
        name, broker.type, broker.default, doc,
        minimum=broker.minimum, maximum=broker.maximum, choices=broker.choices,
        check=broker.check, expects=broker.expects, group="Topic",
        log_field=broker.log_field, broker_key=broker_key,
    )


TOPIC_SETTINGS: tuple[Setting, ...] = (
    _topic_setting("retention.ms", "log.retention.ms",
                   "Milliseconds a closed segment is kept; -1 keeps segments forever."),
    _topic_setting("retention.bytes", "log.retention.bytes",
                   "Size a partition may reach before its oldest segments are deleted; -1: "
                   "no limit."),
    _topic_setting("segment.bytes", "log.segment.bytes", "Size at which a segment is closed."),
    _topic_setting("segment.ms", "log.roll.ms", "Age at which the active segment is closed."),
    _topic_setting("max.message.bytes", "message.max.bytes",
                   "Largest record batch accepted, in bytes."),
    _topic_setting("flush.policy", "log.flush.policy",
                   "When appends are made durable: batch, interval or os."),
    _topic_setting("flush.ms", "log.flush.interval.ms", "Flush period of the interval policy."),
    _topic_setting("index.interval.bytes", "log.index.interval.bytes",
                   "Bytes of records between two index entries."),
    _topic_setting("min.insync.replicas", "min.insync.replicas",
                   "With acks=all, in-sync replicas that must hold a batch before its ack."),
    _topic_setting("unclean.leader.election.enable", "unclean.leader.election.enable",
                   "Let an out-of-sync replica lead when no in-sync one is alive (loses "
                   "what it lacked)."),
    Setting(
        "cleanup.policy", "string", "delete",
        "What happens to old segments: delete. Compaction is not supported.",
        check=_cleanup_policy, expects="delete", group="Topic",
    ),
)

TOPIC_SETTINGS_BY_NAME: Mapping[str, Setting] = MappingProxyType(
    {s.name: s for s in TOPIC_SETTINGS}
)
TOPIC_CONFIG_KEYS: tuple[str, ...] = tuple(s.name for s in TOPIC_SETTINGS)
# topic config -> the broker setting that is its default (None: a fixed default)
TOPIC_CONFIG_BROKER_KEYS: Mapping[str, str | None] = MappingProxyType(
    {s.name: s.broker_key for s in TOPIC_SETTINGS}
)
_BROKER_TO_TOPIC = {b: t for t, b in TOPIC_CONFIG_BROKER_KEYS.items() if b and b != t}


def _unknown_key(key: str, where: str, known: Sequence[str], kind: str) -> ConfigError:
    if not key:
        return ConfigError(f"a {kind} with an empty key{where}; write KEY=VALUE", key=key)
    if kind == "topic config" and key in _BROKER_TO_TOPIC:
        return ConfigError(
            f"unknown topic config {key!r}{where}; did you mean {_BROKER_TO_TOPIC[key]!r}? "
            f"({key!r} is the broker setting that gives its default)",
            key=key,
        )
    broker_key = TOPIC_CONFIG_BROKER_KEYS.get(key)
    if kind == "setting" and broker_key and key not in SETTINGS_BY_NAME:
        return ConfigError(
            f"unknown setting {key!r}{where}; did you mean {broker_key!r}? "
            f"({key!r} is a topic config, set per topic)",
            key=key,
        )
    matches = difflib.get_close_matches(key, known, n=1)
    if matches:
        return ConfigError(f"unknown {kind} {key!r}{where}; did you mean {matches[0]!r}?", key=key)
    return ConfigError(f"unknown {kind} {key!r}{where}; {DOCS_HINT}", key=key)


def _bad_value(setting: Setting, raw: str, where: str, reason: str, kind: str = "") -> ConfigError:
    return ConfigError(f"invalid value {raw!r} for {kind}{setting.name}{where}: {reason}",
                       key=setting.name)


def validate_topic_configs(configs: Mapping[str, Any]) -> dict[str, Any]:
    """Topic-level configs (Kafka names, string values) -> typed values.

    ConfigError on an unknown key (naming the nearest valid one) or a bad value.
    Non-string values are accepted as their text (True -> "true", 5 -> "5").
    """
    typed: dict[str, Any] = {}
    for key, raw in configs.items():
        setting = _topic_setting(key)
        text = format_value(raw) if isinstance(raw, bool) else str(raw)
        try:
            typed[key] = setting.parse(text)
        except _BadValue as e:
            raise _bad_value(setting, text, "", str(e), kind="topic config ") from None
    return typed


def validate_topic_config_names(names: Iterable[str]) -> None:
    """ConfigError on a name that is no topic config: a typo in a config to
    delete would otherwise change nothing and say nothing."""
    for name in names:
        _topic_setting(name)


def _topic_setting(key: str) -> Setting:
    setting = TOPIC_SETTINGS_BY_NAME.get(key)
    if setting is None:
        raise _unknown_key(key, "", TOPIC_CONFIG_KEYS, "topic config")
    return setting


# --------------------------------------------------------------------------- properties files

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_WHITESPACE = " \t\f"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", text[i + 2 : i + 6]):
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _ends_in_continuation(line: str) -> bool:
    stripped = line.rstrip("\\")
    return (len(line) - len(stripped)) % 2 == 1


def _split_key_value(line: str) -> tuple[str, str]:
    """Java's rule: the key ends at the first unescaped '=', ':' or whitespace."""
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in "=:" or c in _WHITESPACE:
            break
        i += 1
    key, rest = line[:i], line[i:]
    rest = rest.lstrip(_WHITESPACE)
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(_WHITESPACE)
    return key, rest


def parse_properties(text: str) -> list[tuple[str, str, int]]:
    """Java .properties text -> [(key, value, line number)], in file order.

    key=value, key: value or key value; '#' and '!' comment lines; blank lines;
    a line ending in an odd number of backslashes continues on the next line
    (whose leading whitespace is dropped); escapes \\t \\n \\r \\f \\uXXXX and
    \\X -> X. Values are stripped of surrounding whitespace. A key repeated
    later replaces the earlier one when the caller builds a dict.
    """
    lines = _LINE_BREAK.split(text)
    entries: list[tuple[str, str, int]] = []
    i = 0
    while i < len(lines):
        number = i + 1
        line = lines[i].lstrip(_WHITESPACE)
        i += 1
        if not line or line[0] in "#!":
            continue
        parts: list[str] = []
        while _ends_in_continuation(line):
            parts.append(line[:-1])
            if i == len(lines):
                line = ""
                break
            line = lines[i].lstrip(_WHITESPACE)
            i += 1
        parts.append(line)
        key, value = _split_key_value("".join(parts))
        entries.append((_unescape(key), _unescape(value).strip(), number))
    return entries


def _escape_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    escaped = escaped.replace("\t", "\\t").replace("\f", "\\f")
    if escaped[:1] == " ":
        escaped = "\\" + escaped
    return escaped


# --------------------------------------------------------------------------- the loaded config


class ServerConfig(Mapping[str, Any]):
    """A loaded, validated, immutable configuration: setting name -> typed value.

    cfg["log.dirs"], cfg.get(name), cfg.items() in registry order,
    cfg.source(name): "default", "file:PATH:LINE", "env:NAME" or "override".
    """

    __slots__ = ("_explicit", "_overrides", "_path", "_sources", "_values")

    def __init__(
        self,
        values: Mapping[str, Any],
        sources: Mapping[str, str],
        *,
        explicit: frozenset[str] = frozenset(),
        path: str | None = None,
        overrides: Sequence[str] = (),
    ):
        missing = [s.name for s in SETTINGS if s.name not in values]
        unknown = [k for k in values if k not in SETTINGS_BY_NAME]
        if missing or unknown:
            raise ValueError(f"ServerConfig needs every setting: missing {missing}, unknown "
                             f"{unknown}")
        ordered = {s.name: values[s.name] for s in SETTINGS}
        object.__setattr__(self, "_values", MappingProxyType(ordered))
        object.__setattr__(
            self, "_sources",
            MappingProxyType({s.name: sources.get(s.name, "default") for s in SETTINGS}),
        )
        object.__setattr__(self, "_explicit", frozenset(explicit))
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_overrides", tuple(overrides))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ServerConfig is immutable; load a new one")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("ServerConfig is immutable; load a new one")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (dict(self._values), dict(self._sources), self._explicit, self._path,
             self._overrides),
        )

    # Mapping
    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            matches = difflib.get_close_matches(name, list(self._values), n=1)
            hint = f"; did you mean {matches[0]!r}?" if matches else ""
            raise KeyError(f"unknown setting {name!r}{hint}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._values.items() if self._sources[k] != "default"}
        return f"ServerConfig({changed!r})"

    # Provenance
    def source(self, name: str) -> str:
        """Where the value came from: default, file:PATH:LINE, env:NAME or override."""
        self[name]  # KeyError naming the nearest key
        return self._sources[name]

    def is_set(self, name: str) -> bool:
        """True when a file, the environment or an override set name itself."""
        self[name]
        return name in self._explicit

    @property
    def path(self) -> str | None:
        """The properties file this was loaded from, if any."""
        return self._path

    @property
    def overrides(self) -> tuple[str, ...]:
        return self._overrides

    def reload(self, environ: Mapping[str, str] | None = None) -> ServerConfig:
        """Load again from the same file and overrides (for SIGHUP). ConfigError if bad."""
        return load_config(self._path, self._overrides, environ)

    # Derived values
    @property
    def log_dirs(self) -> tuple[Path, ...]:
        return tuple(Path(entry.strip()) for entry in self._values["log.dirs"].split(","))

    @property
    def log_dir(self) -> Path:
        """The directory Ringlog uses: the first entry of log.dirs."""
        return self.log_dirs[0]

    def listener_host_port(self, name: str = "listeners") -> tuple[str, int]:
        """(host, port) of the native tcp:// entry of listeners, of
        replication.listener or of http.listener."""
        value = self[name]
        if name not in ("listeners", "replication.listener", "http.listener"):
            raise KeyError(f"{name!r} is not a listener setting")
        if name == "listeners":
            return _listener_map(value)[NATIVE_SCHEME]
        text = value[len("tcp://") :] if value.startswith("tcp://") else value
        parsed = _split_host_port(text)
        assert parsed is not None  # validated when loaded
        return parsed

    def kafka_listener(self) -> tuple[str, int] | None:
        """(host, port) of the PLAINTEXT:// entry of listeners: None, no Kafka door."""
        return _listener_map(self["listeners"]).get(KAFKA_SCHEME)

    def advertised(self, scheme: str, bound: tuple[str, int]) -> tuple[str, int]:
        """What metadata hands out for the listener of `scheme` that is bound at
        `bound`: advertised.listeners' entry, else the bound address."""
        if self["advertised.listeners"]:
            entry = _listener_map(self["advertised.listeners"]).get(scheme)
            if entry is not None:
                return entry
        return bound

    # SIGHUP
    def _changes(self, other: ServerConfig, dynamic: bool) -> dict[str, tuple[Any, Any]]:
        return {
            s.name: (self._values[s.name], other[s.name])
            for s in SETTINGS
            if s.dynamic == dynamic and self._values[s.name] != other[s.name]
        }

    def dynamic_changes(self, other: ServerConfig) -> dict[str, tuple[Any, Any]]:
        """Dynamic settings whose value differs in other: {name: (old, new)}."""
        return self._changes(other, dynamic=True)

    def static_changes(self, other: ServerConfig) -> dict[str, tuple[Any, Any]]:
        """Static settings whose value differs in other: these need a restart."""
        return self._changes(other, dynamic=False)

    def apply_dynamic(self, other: ServerConfig) -> ServerConfig:
        """This config with other's dynamic settings: what a SIGHUP puts in force."""
        values = dict(self._values)
        sources = dict(self._sources)
        explicit = set(self._explicit)
        for name in DYNAMIC_KEYS:
            values[name] = other[name]
            sources[name] = other.source(name)
            explicit.discard(name)
            if other.is_set(name):
                explicit.add(name)
        return ServerConfig(values, sources, explicit=frozenset(explicit), path=other.path,
                            overrides=other.overrides)

    # Topics
    def topic_defaults(self) -> dict[str, Any]:
        """Every topic config key -> its default on this broker."""
        defaults = {}
        for setting in TOPIC_SETTINGS:
            broker_key = TOPIC_CONFIG_BROKER_KEYS[setting.name]
            defaults[setting.name] = self._values[broker_key] if broker_key else setting.default
        return defaults

    def log_config(self, topic_configs: Mapping[str, Any] | None = None) -> LogConfig:
        """A partition's storage settings: the topic's configs over the broker defaults."""
        effective = {**self.topic_defaults(), **validate_topic_configs(topic_configs or {})}
        return LogConfig(**{s.log_field: effective[s.name] for s in TOPIC_SETTINGS
                            if s.log_field})


def _rebuild(values, sources, explicit, path, overrides) -> ServerConfig:
    return ServerConfig(values, sources, explicit=explicit, path=path, overrides=overrides)


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class _Raw:
    text: str
    source: str  # for ServerConfig.source
    where: str  # for messages: " in PATH line 3"


def _read_file(path: str | os.PathLike[str]) -> list[tuple[str, str, int]]:
    shown = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"config file {shown} not found; pass --config with the path of an existing "
            f"server.properties"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"config file {shown} is a directory; pass --config with the path of a "
            f"server.properties file"
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {shown}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {shown} is not UTF-8 text (bad byte at offset {e.start}); "
            f"save it as UTF-8"
        ) from None
    return parse_properties(text.removeprefix("\ufeff"))


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> ServerConfig:
    """Defaults < the properties file at path < RINGLOG_* variables < overrides.

    path None reads no file; environ None means os.environ; overrides are
    "key=value" strings as given to --override. Raises ConfigError.
    """
    if isinstance(overrides, str):
        overrides = (overrides,)
    environ = os.environ if environ is None else environ
    names = [s.name for s in SETTINGS]
    raw: dict[str, _Raw] = {}

    if path is not None:
        shown = os.fspath(path)
        for key, value, line in _read_file(path):
            where = f" in {shown} line {line}"
            if key not in SETTINGS_BY_NAME:
                raise _unknown_key(key, where, names, "setting")
            raw[key] = _Raw(value, f"file:{shown}:{line}", where)

    for setting in SETTINGS:
        variable = env_var_name(setting.name)
        if variable in environ:
            raw[setting.name] = _Raw(environ[variable], f"env:{variable}",
                                     f" in environment variable {variable}")

    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"--override {override!r} is not KEY=VALUE; write e.g. --override "
                f"log.dirs=./data"
            )
        where = f" in --override {override}"
        if key not in SETTINGS_BY_NAME:
            raise _unknown_key(key, where, names, "setting")
        raw[key] = _Raw(value, "override", where)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        given = raw.get(setting.name)
        if given is None:
            values[setting.name] = setting.default_value()
            sources[setting.name] = "default"
            continue
        try:
            values[setting.name] = setting.parse(given.text)
        except _BadValue as e:
            raise _bad_value(setting, given.text, given.where, str(e)) from None
        sources[setting.name] = given.source

    _resolve_retention(values, sources, raw)
    _check_consistency(values, sources)
    return ServerConfig(
        values, sources, explicit=frozenset(raw),
        path=None if path is None else os.fspath(path), overrides=tuple(overrides),
    )


def _resolve_retention(values: dict[str, Any], sources: dict[str, str], raw: Mapping) -> None:
    """Kafka's rule: log.retention.ms if set, else minutes, else hours, else one week."""
    if "log.retention.ms" in raw:
        return
    for key, unit in (("log.retention.minutes", MINUTE_MS), ("log.retention.hours", HOUR_MS)):
        if key in raw:
            amount = values[key]
            values["log.retention.ms"] = -1 if amount < 0 else amount * unit
            sources["log.retention.ms"] = sources[key]
            return


def _check_consistency(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    low, high = values["group.min.session.timeout.ms"], values["group.max.session.timeout.ms"]
    if low > high:
        raise ConfigError(
            f"group.min.session.timeout.ms={low} ({sources['group.min.session.timeout.ms']}) "
            f"exceeds group.max.session.timeout.ms={high} "
            f"({sources['group.max.session.timeout.ms']}); lower the first or raise the second",
            key="group.min.session.timeout.ms",
        )
    seen: dict[tuple[str, int], str] = {}
    for name in ("listeners", "replication.listener", "http.listener"):
        value = values[name]
        if not value:
            continue  # an empty http.listener serves nothing
        if name == "listeners":
            addresses = list(_listener_map(value).values())
        else:
            text = value[len("tcp://") :] if value.startswith("tcp://") else value
            addresses = [_split_host_port(text)]
        for address in addresses:
            assert address is not None
            if address[1] == 0:
                continue  # any free port: no clash
            if address in seen:
                other = seen[address]
                clash = (f"names {address[0]}:{address[1]} twice" if other == name else
                         f"uses the same address as {other}={values[other]} ({sources[other]})")
                raise ConfigError(
                    f"{name}={value} ({sources[name]}) {clash}; give each listener its own port",
                    key=name,
                )
            seen[address] = name


def default_config() -> ServerConfig:
    """The built-in defaults: no file, no environment, no overrides."""
    return load_config(None, (), {})


# --------------------------------------------------------------------------- rendering

_HEADER = """\
# Ringlog broker configuration (Kafka's server.properties format and key names).
#
# Precedence, later wins: built-in defaults < this file < environment variables
# RINGLOG_<KEY> (dots as underscores, upper case: RINGLOG_LOG_DIRS) <
# `ringlog serve --override key=value`.
#
# Settings marked "reloaded on SIGHUP" change without a restart; the others
# need one. An unknown key or a bad value stops start-up with one line naming
# it. docs/configuration.md describes every key.
#
# Generated by `python -m appliance.config`; every key is listed with its
# default. Lines starting with # are comments."""


def _kind(setting: Setting) -> str:
    """'int >= 1', 'int in [1024, 2147483647]', 'string: one of batch, interval, os'."""
    if setting.type in ("int", "long") and setting.expectation() != "an integer":
        return f"{setting.type} {setting.expectation().removeprefix('an integer ')}"
    if setting.choices:
        return f"{setting.type}: {setting.expectation()}"
    if setting.expects:
        return f"{setting.type}: {setting.expects}"
    return setting.type


def _describe(setting: Setting) -> str:
    default = setting.default_text or format_value(setting.default) or '""'
    parts = [_kind(setting), f"default {default}"]
    if setting.dynamic:
        parts.append("reloaded on SIGHUP")
    return "; ".join(parts)


def render_properties(cfg: ServerConfig | None = None) -> str:
    """A commented server.properties holding cfg's values (the defaults if None).

    Keys at a default that depends on the machine (num.workers), unset keys and
    the alternative retention keys are written commented out, so that the file
    means the same on every host.
    """
    cfg = default_config() if cfg is None else cfg
    out = [_HEADER]
    group = None
    for setting in SETTINGS:
        if setting.group != group:
            group = setting.group
            title = f" {group} "
            out.append("")
            out.append("#" * 29 + title + "#" * max(3, 48 - len(title)))
        out.append("")
        for line in textwrap.wrap(setting.doc, width=76, break_on_hyphens=False):
            out.append(f"# {line}")
        out.append(f"# ({_describe(setting)})")
        value = cfg[setting.name]
        at_default = not cfg.is_set(setting.name) and (
            setting.machine_dependent or value == setting.default
        )
        if value is None or (setting.commented and at_default):
            shown = setting.example if setting.example is not None else format_value(value)
            out.append(f"#{setting.name}={_escape_value(shown)}")
        else:
            out.append(f"{setting.name}={_escape_value(format_value(value))}")
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_reference_table() -> str:
    """The Markdown table of every setting in docs/configuration.md."""
    rows = [
        "| key | type | default | dynamic | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        kind = _kind(s)
        default = s.default_text or f"`{format_value(s.default)}`"
        if default == "``":
            default = "empty"
        rows.append(
            f"| `{s.name}` | {_md(kind)} | {_md(default)} | {'yes' if s.dynamic else 'no'} "
            f"| {_md(s.doc)} |"
        )
    return "\n".join(rows) + "\n"


def render_topic_table() -> str:
    """The Markdown table of topic-level configs in docs/configuration.md."""
    rows = [
        "| topic config | type | default from | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for s in TOPIC_SETTINGS:
        broker_key = TOPIC_CONFIG_BROKER_KEYS[s.name]
        default = f"`{broker_key}`" if broker_key else f"`{format_value(s.default)}`"
        rows.append(f"| `{s.name}` | {_md(_kind(s))} | {default} | {_md(s.doc)} |")
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--markdown"]:
        sys.stdout.write(render_reference_table() + "\n" + render_topic_table())
    elif not args:
        sys.stdout.write(render_properties(default_config()))
    else:
        sys.stderr.write("usage: python -m appliance.config [--markdown]\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
