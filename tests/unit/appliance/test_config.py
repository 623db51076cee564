"""The appliance's configuration: server.properties with Kafka's key names.

Sources, later wins: defaults < file < RINGLOG_* environment < --override.
Every failure is a ConfigError whose message is one line naming the key,
where it came from and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import pytest

from appliance.config import (
    DYNAMIC_KEYS,
    SETTINGS,
    SETTINGS_BY_NAME,
    TOPIC_CONFIG_BROKER_KEYS,
    TOPIC_CONFIG_KEYS,
    TOPIC_SETTINGS,
    ConfigError,
    ServerConfig,
    default_config,
    env_var_name,
    load_config,
    parse_properties,
    render_properties,
    render_reference_table,
    render_topic_table,
    validate_topic_configs,
)
from shm.partition_log import LogConfig

REPO = Path(__file__).resolve().parents[3]
WEEK_MS = 7 * 24 * 3600 * 1000


def write(tmp_path: Path, text: str, name: str = "server.properties") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path=None, overrides=(), environ=None) -> ServerConfig:
    """load_config with an empty environment unless one is given."""
    return load_config(path, overrides, {} if environ is None else environ)


def config_error(**kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return message


# --------------------------------------------------------------------------- defaults

EXPECTED_DEFAULTS = {
    "broker.id": 0,
    "listeners": "tcp://127.0.0.1:7092,PLAINTEXT://127.0.0.1:9092",
    "advertised.listeners": "",
    "socket.request.max.bytes": 104_857_600,
    "replication.listener": "tcp://127.0.0.1:7093",
    "http.listener": "127.0.0.1:7094",
    "log.dirs": "/var/lib/ringlog",
    "num.partitions": 1,
    "default.replication.factor": 1,
    "auto.create.topics.enable": True,
    "delete.topic.enable": True,
    "log.retention.ms": 604_800_000,
    "log.retention.minutes": None,
    "log.retention.hours": 168,
    "log.retention.bytes": -1,
    "log.segment.bytes": 1_073_741_824,
    "log.roll.ms": 604_800_000,
    "log.index.interval.bytes": 4096,
    "log.retention.check.interval.ms": 300_000,
    "message.max.bytes": 1_048_588,
    "min.insync.replicas": 1,
    "zookeeper.connect": "",
    "zookeeper.session.timeout.ms": 18_000,
    "unclean.leader.election.enable": False,
    "replica.lag.time.max.ms": 30_000,
    "replica.fetch.wait.max.ms": 500,
    "replica.fetch.max.bytes": 1_048_576,
    "controlled.shutdown.enable": True,
    "num.workers": os.cpu_count() or 1,
    "log.flush.policy": "batch",
    "log.flush.interval.ms": 1000,
    "queued.max.requests": 500,
    "group.min.session.timeout.ms": 6000,
    "group.max.session.timeout.ms": 1_800_000,
    "group.initial.rebalance.delay.ms": 3000,
    "offsets.topic.num.partitions": 8,
    "offsets.topic.replication.factor": 3,
    "offsets.retention.minutes": 10080,
}


def test_the_built_in_defaults_are_kafkas_and_ringlogs():
    cfg = default_config()
    assert dict(cfg.items()) == EXPECTED_DEFAULTS
    assert all(cfg.source(name) == "default" for name in cfg)
    assert cfg == load()  # no file, no environment, no overrides


def test_defaults_derive_the_log_directory_and_listener_addresses():
    cfg = default_config()
    assert cfg.log_dir == Path("/var/lib/ringlog")
    assert cfg.listener_host_port("listeners") == ("127.0.0.1", 7092)
    assert cfg.listener_host_port("replication.listener") == ("127.0.0.1", 7093)
    assert cfg.listener_host_port("http.listener") == ("127.0.0.1", 7094)


def test_defaults_give_the_storage_engines_own_log_config():
    assert default_config().log_config() == LogConfig()


def test_every_log_config_field_is_one_broker_setting_and_one_topic_config():
    """LogConfig declares the storage defaults and bounds; the table takes them.
    A field fed by no setting, or a setting that restates its own, fails here."""
    fields = [f.name for f in dataclasses.fields(LogConfig)]
    broker = [s.log_field for s in SETTINGS if s.log_field]
    topic = [s.log_field for s in TOPIC_SETTINGS if s.log_field]
    assert sorted(broker) == sorted(topic) == sorted(fields)
    for setting in (*SETTINGS, *TOPIC_SETTINGS):
        if setting.log_field is None:
            continue
        bounds = LogConfig.bounds_of(setting.log_field)
        assert setting.default == LogConfig.default_of(setting.log_field), setting.name
        assert (setting.minimum, setting.maximum, setting.choices) == (
            bounds.minimum, bounds.maximum, bounds.choices), setting.name
        if setting.minimum is not None:  # the table and the engine refuse the same values
            with pytest.raises(ValueError, match="expected an integer"):
                setting.parse(str(setting.minimum - 1))
            with pytest.raises(ValueError, match=setting.log_field):
                LogConfig(**{setting.log_field: setting.minimum - 1})


def test_topic_configs_name_the_broker_setting_they_default_to():
    assert dict(TOPIC_CONFIG_BROKER_KEYS) == {s.name: s.broker_key for s in TOPIC_SETTINGS}
    for setting in TOPIC_SETTINGS:
        if setting.broker_key is not None:
            assert setting.default == SETTINGS_BY_NAME[setting.broker_key].default
    assert TOPIC_CONFIG_BROKER_KEYS["cleanup.policy"] is None


def test_every_setting_is_defined_once_with_a_type_and_a_doc():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names)) == len(SETTINGS_BY_NAME)
    assert set(names) == set(EXPECTED_DEFAULTS)
    for setting in SETTINGS:
        assert setting.type in ("int", "long", "string", "boolean")
        assert setting.doc.endswith("."), setting.name


def test_only_the_documented_keys_are_dynamic():
    assert set(DYNAMIC_KEYS) == {
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
        "log.retention.bytes",
        "log.retention.check.interval.ms",
        "log.flush.interval.ms",
        "message.max.bytes",
        "auto.create.topics.enable",
        "delete.topic.enable",
    }


def test_a_config_is_immutable_and_survives_pickling():
    cfg = load(overrides=["num.partitions=3"])
    with pytest.raises(AttributeError):
        cfg.x = 1
    with pytest.raises(TypeError):
        cfg["num.partitions"] = 4  # type: ignore[index]
    copy = pickle.loads(pickle.dumps(cfg))
    assert copy == cfg
    assert copy.source("num.partitions") == "override"


def test_an_unknown_name_is_a_key_error_naming_the_nearest():
    cfg = default_config()
    with pytest.raises(KeyError, match=r"did you mean 'log\.dirs'"):
        cfg["log.dir"]
    assert cfg.get("log.dir") is None
    assert cfg.get("log.dir", 5) == 5
    with pytest.raises(KeyError):
        cfg.source("nope")


# --------------------------------------------------------------------------- file syntax


def test_the_file_takes_equals_colon_and_whitespace_separators(tmp_path):
    path = write(tmp_path, "num.partitions=3\nbroker.id: 7\nlog.dirs   /srv/ringlog\n")
    cfg = load(path)
    assert cfg["num.partitions"] == 3
    assert cfg["broker.id"] == 7
    assert cfg["log.dirs"] == "/srv/ringlog"


def test_comments_and_blank_lines_are_ignored(tmp_path):
    path = write(
        tmp_path,
        "# a comment\n"
        "! also a comment\n"
        "   # indented comment\n"
        "\n"
        "   \t\n"
        "#num.partitions=9\n"
        "num.partitions=2\n",
    )
    cfg = load(path)
    assert cfg["num.partitions"] == 2
    assert cfg.source("num.partitions") == f"file:{path}:7"


def test_whitespace_around_keys_and_values_is_trimmed(tmp_path):
    path = write(tmp_path, "   num.partitions   =   4   \n\tlog.dirs = /a \n")
    cfg = load(path)
    assert cfg["num.partitions"] == 4
    assert cfg["log.dirs"] == "/a"


def test_a_trailing_backslash_continues_the_line(tmp_path):
    path = write(
        tmp_path,
        "log.dirs=/srv/a,\\\n"
        "         /srv/b\n"
        "num.partitions=\\\n"
        "  1\\\n"
        "  2\n",
    )
    cfg = load(path)
    assert cfg["log.dirs"] == "/srv/a,/srv/b"
    assert cfg.log_dir == Path("/srv/a")
    assert cfg["num.partitions"] == 12
    assert cfg.source("num.partitions") == f"file:{path}:3"  # where the entry starts


def test_an_escaped_backslash_at_the_end_does_not_continue():
    assert parse_properties("a=x\\\\\nb=y") == [("a", "x\\", 1), ("b", "y", 2)]


def test_a_comment_ending_in_a_backslash_does_not_continue():
    assert parse_properties("# comment \\\nnum.partitions=2\n") == [("num.partitions", "2", 2)]


def test_escapes_in_keys_and_values():
    assert parse_properties(r"a\=b=c\:d\u0041\tz") == [("a=b", "c:dA\tz", 1)]


def test_all_line_endings_count_as_lines():
    assert parse_properties("a=1\r\nb=2\rc=3\n") == [("a", "1", 1), ("b", "2", 2), ("c", "3", 3)]


def test_a_key_given_twice_takes_the_later_line(tmp_path):
    path = write(tmp_path, "num.partitions=2\nnum.partitions=5\n")
    cfg = load(path)
    assert cfg["num.partitions"] == 5
    assert cfg.source("num.partitions") == f"file:{path}:2"


def test_a_utf8_byte_order_mark_is_skipped(tmp_path):
    path = tmp_path / "bom.properties"
    path.write_bytes(b"\xef\xbb\xbfnum.partitions=2\n")
    assert load(path)["num.partitions"] == 2


def test_the_path_may_be_a_string_or_a_path(tmp_path):
    path = write(tmp_path, "num.partitions=2\n")
    assert load(str(path)) == load(path)


# --------------------------------------------------------------------------- precedence


def test_precedence_is_default_then_file_then_environment_then_override(tmp_path):
    path = write(
        tmp_path,
        "num.partitions=2\ndefault.replication.factor=2\nmin.insync.replicas=2\n",
    )
    environ = {"RINGLOG_DEFAULT_REPLICATION_FACTOR": "3", "RINGLOG_MIN_INSYNC_REPLICAS": "3"}
    cfg = load(path, ["min.insync.replicas=4"], environ)
    assert cfg["broker.id"] == 0
    assert cfg.source("broker.id") == "default"
    assert cfg["num.partitions"] == 2
    assert cfg.source("num.partitions") == f"file:{path}:1"
    assert cfg["default.replication.factor"] == 3
    assert cfg.source("default.replication.factor") == "env:RINGLOG_DEFAULT_REPLICATION_FACTOR"
    assert cfg["min.insync.replicas"] == 4
    assert cfg.source("min.insync.replicas") == "override"


def test_later_overrides_win_over_earlier_ones():
    cfg = load(overrides=["num.partitions=2", "num.partitions=3"])
    assert cfg["num.partitions"] == 3


def test_an_override_value_may_contain_equals_signs():
    cfg = load(overrides=["zookeeper.connect=zk:2181/ringlog?a=b"])
    assert cfg["zookeeper.connect"] == "zk:2181/ringlog?a=b"


def test_environment_variables_are_the_key_upper_cased_with_underscores():
    assert env_var_name("log.dirs") == "RINGLOG_LOG_DIRS"
    assert (
        env_var_name("log.retention.check.interval.ms") == "RINGLOG_LOG_RETENTION_CHECK_INTERVAL_MS"
    )
    cfg = load(environ={"RINGLOG_LOG_DIRS": "/x", "RINGLOG_AUTO_CREATE_TOPICS_ENABLE": "FALSE"})
    assert cfg.log_dir == Path("/x")
    assert cfg["auto.create.topics.enable"] is False


def test_ringlog_variables_that_are_not_settings_are_ignored():
    environ = {
        "RINGLOG_BOOTSTRAP_SERVER": "10.0.0.1:7092",
        "RINGLOG_SHM_DIR": "/dev/shm/x",
        "RINGLOG_LOG_DIR": "typo, but not a setting: ignored",
        "LOG_DIRS": "/not-prefixed",
    }
    assert load(environ=environ) == default_config()


def test_without_an_explicit_environment_the_process_environment_is_read(monkeypatch):
    monkeypatch.setenv("RINGLOG_NUM_PARTITIONS", "6")
    assert load_config()["num.partitions"] == 6
    assert load_config(environ={})["num.partitions"] == 1


# --------------------------------------------------------------------------- retention units


@pytest.mark.parametrize(
    ("settings", "expected_ms"),
    [
        ({}, WEEK_MS),
        ({"log.retention.hours": "24"}, 24 * 3600 * 1000),
        ({"log.retention.minutes": "90"}, 90 * 60 * 1000),
        ({"log.retention.ms": "1234"}, 1234),
        ({"log.retention.hours": "24", "log.retention.minutes": "90"}, 90 * 60 * 1000),
        ({"log.retention.minutes": "90", "log.retention.ms": "1234"}, 1234),
        ({"log.retention.hours": "1", "log.retention.minutes": "2", "log.retention.ms": "3"}, 3),
        ({"log.retention.hours": "-1"}, -1),
        ({"log.retention.minutes": "-1", "log.retention.hours": "5"}, -1),
        ({"log.retention.ms": "-1"}, -1),
        ({"log.retention.hours": "0"}, 0),
    ],
)
def test_retention_ms_beats_minutes_beats_hours(tmp_path, settings, expected_ms):
    path = write(tmp_path, "".join(f"{k}={v}\n" for k, v in settings.items()))
    cfg = load(path)
    assert cfg["log.retention.ms"] == expected_ms
    assert cfg.log_config().retention_ms == expected_ms


def test_retention_precedence_is_by_key_not_by_source(tmp_path):
    # As in Kafka: an override in hours does not beat milliseconds from the file.
    path = write(tmp_path, "log.retention.ms=5000\n")
    cfg = load(path, ["log.retention.hours=1"])
    assert cfg["log.retention.ms"] == 5000
    assert cfg["log.retention.hours"] == 1


def test_retention_from_hours_names_the_hours_line_as_its_source(tmp_path):
    path = write(tmp_path, "num.partitions=1\nlog.retention.hours=2\n")
    cfg = load(path)
    assert cfg.source("log.retention.ms") == f"file:{path}:2"
    assert cfg.is_set("log.retention.hours")
    assert not cfg.is_set("log.retention.ms")


# --------------------------------------------------------------------------- errors


def test_an_unknown_key_in_the_file_names_the_line_and_the_nearest_key(tmp_path):
    lines = ["# header"] * 11 + ["log.retention.hour=12"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    assert config_error(path=path) == (
        f"unknown setting 'log.retention.hour' in {path} line 12; "
        "did you mean 'log.retention.hours'?"
    )


def test_an_unknown_override_names_the_override_and_the_nearest_key():
    message = config_error(overrides=["num.partition=3"])
    assert message == (
        "unknown setting 'num.partition' in --override num.partition=3; "
        "did you mean 'num.partitions'?"
    )


def test_an_unknown_key_far_from_every_setting_points_to_the_reference():
    message = config_error(overrides=["xyzzy=1"])
    assert message.startswith("unknown setting 'xyzzy' in --override xyzzy=1; ")
    assert "docs/configuration.md" in message


def test_a_topic_config_in_the_broker_file_points_to_its_broker_default(tmp_path):
    path = write(tmp_path, "retention.ms=1000\n")
    message = config_error(path=path)
    assert message.startswith(
        f"unknown setting 'retention.ms' in {path} line 1; did you mean 'log.retention.ms'?"
    )


def test_a_missing_config_file_is_named():
    message = config_error(path="/nonexistent/ringlog/server.properties")
    assert "/nonexistent/ringlog/server.properties" in message
    assert "not found" in message


def test_a_directory_is_not_a_config_file(tmp_path):
    assert "is a directory" in config_error(path=tmp_path)


def test_a_config_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.properties"
    path.write_bytes(b"log.dirs=/caf\xe9\n")
    assert "not UTF-8" in config_error(path=path)


@pytest.mark.parametrize("override", ["log.dirs", "=5", "  =5", ""])
def test_an_override_that_is_not_key_equals_value_is_refused(override):
    message = config_error(overrides=[override])
    assert message.startswith(f"--override {override!r} is not KEY=VALUE")


def test_a_line_with_no_key_is_refused(tmp_path):
    path = write(tmp_path, "=5\n")
    assert config_error(path=path).startswith("a setting with an empty key in")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("num.partitions", "abc", "expected an integer >= 1, e.g. num.partitions=1"),
        ("num.partitions", "0", "expected an integer >= 1"),
        ("num.partitions", "1.5", "expected an integer >= 1"),
        ("num.partitions", "1_000", "expected an integer >= 1"),
        ("num.partitions", "", "expected an integer >= 1"),
        ("num.partitions", "3000000000", "expected an integer <= 2147483647"),
        ("broker.id", "-1", "expected an integer >= 0"),
        ("log.retention.ms", "-2", "expected an integer >= -1"),
        ("log.retention.ms", "99999999999999999999", "expected an integer <= 9223372036854775807"),
        ("log.retention.hours", "-5", "expected an integer >= -1"),
        ("log.segment.bytes", "1023", "expected an integer in [1024, 2147483647]"),
        ("log.segment.bytes", "2147483648", "expected an integer in [1024, 2147483647]"),
        ("num.workers", "0", "expected an integer in [1, 1024], e.g. num.workers=4"),
        ("auto.create.topics.enable", "yes", "expected true or false"),
        ("delete.topic.enable", "1", "expected true or false"),
        ("delete.topic.enable", "", "expected true or false"),
        ("log.flush.policy", "always", "expected one of batch, interval, os"),
        ("log.flush.policy", "BATCH", "expected one of batch, interval, os"),
        ("listeners", "127.0.0.1:7092", "is not tcp://HOST:PORT or PLAINTEXT://HOST:PORT"),
        ("listeners", "tcp://127.0.0.1", "is not tcp://HOST:PORT or PLAINTEXT://HOST:PORT"),
        ("listeners", "tcp://127.0.0.1:70000", "port in [0, 65535]"),
        ("listeners", "http://127.0.0.1:7092", "is not tcp://HOST:PORT or PLAINTEXT://HOST:PORT"),
        ("listeners", "PLAINTEXT://127.0.0.1:9092", "no tcp://HOST:PORT entry"),
        ("listeners", "tcp://127.0.0.1:1,tcp://127.0.0.1:2", "two tcp:// entries"),
        ("advertised.listeners", "PLAINTEXT://0.0.0.0:9092", "a wildcard address"),
        ("advertised.listeners", "PLAINTEXT://h:0", "port 0 cannot be advertised"),
        ("replication.listener", "tcp://:7093", "expected tcp://HOST:PORT"),
        ("http.listener", "http://127.0.0.1:7094", "without a scheme"),
        ("http.listener", "localhost", "expected HOST:PORT"),
        ("log.dirs", "", "expected one directory or a comma-separated list"),
        ("log.dirs", "/a,,/b", "expected one directory or a comma-separated list"),
    ],
)
def test_a_bad_value_names_the_key_the_value_where_and_what_is_expected(key, value, expected):
    message = config_error(overrides=[f"{key}={value}"])
    assert message.startswith(f"invalid value {value!r} for {key} in --override {key}={value}: ")
    assert expected in message


def test_a_bad_value_in_the_file_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "broker.id=0\nnum.partitions=many\n")
    assert config_error(path=path) == (
        f"invalid value 'many' for num.partitions in {path} line 2: "
        "expected an integer >= 1, e.g. num.partitions=1"
    )


def test_a_bad_value_in_the_environment_names_the_variable():
    message = config_error(environ={"RINGLOG_NUM_PARTITIONS": "x"})
    assert message.startswith(
        "invalid value 'x' for num.partitions in environment variable RINGLOG_NUM_PARTITIONS: "
    )


def test_only_the_value_in_force_is_checked_as_in_kafka(tmp_path):
    # A bad value that a later source replaces is never used; an unknown key is
    # refused wherever it is.
    path = write(tmp_path, "num.partitions=x\n")
    assert load(path, ["num.partitions=2"])["num.partitions"] == 2
    assert "num.partitions" in config_error(path=path)


def test_a_value_with_a_line_break_still_gives_a_one_line_error():
    message = config_error(environ={"RINGLOG_NUM_PARTITIONS": "1\n2"})
    assert "'1\\n2'" in message


def test_booleans_take_true_and_false_in_any_case():
    cfg = load(overrides=["auto.create.topics.enable=FALSE", "delete.topic.enable=True"])
    assert cfg["auto.create.topics.enable"] is False
    assert cfg["delete.topic.enable"] is True


def test_listeners_accept_ipv6_and_port_zero():
    cfg = load(overrides=["listeners=tcp://[::1]:0", "http.listener=0.0.0.0:8080"])
    assert cfg.listener_host_port("listeners") == ("::1", 0)
    assert cfg.listener_host_port("http.listener") == ("0.0.0.0", 8080)
    assert cfg.kafka_listener() is None  # no PLAINTEXT entry: no Kafka door


def test_listeners_name_the_native_and_the_kafka_door_and_what_each_advertises():
    cfg = load()
    assert cfg.listener_host_port("listeners") == ("127.0.0.1", 7092)
    assert cfg.kafka_listener() == ("127.0.0.1", 9092)
    assert cfg.advertised("PLAINTEXT", ("127.0.0.1", 9092)) == ("127.0.0.1", 9092)
    cfg = load(overrides=["listeners=PLAINTEXT://0.0.0.0:19092, tcp://0.0.0.0:17092",
                          "advertised.listeners=PLAINTEXT://broker1.example:19092"])
    assert cfg.kafka_listener() == ("0.0.0.0", 19092)
    assert cfg.advertised("PLAINTEXT", ("0.0.0.0", 19092)) == ("broker1.example", 19092)
    assert cfg.advertised("tcp", ("0.0.0.0", 17092)) == ("0.0.0.0", 17092)


def test_two_listeners_on_one_address_are_refused():
    message = config_error(overrides=["http.listener=127.0.0.1:7092"])
    assert message.startswith("http.listener=127.0.0.1:7092 (override) uses the same address as")
    assert "listeners=tcp://127.0.0.1:7092,PLAINTEXT://127.0.0.1:9092 (default)" in message
    message = config_error(overrides=["listeners=tcp://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9092"])
    assert "names 127.0.0.1:9092 twice; give each listener its own port" in message
    # Port 0 means "any free port" and never clashes.
    load(overrides=["listeners=tcp://127.0.0.1:0", "replication.listener=tcp://127.0.0.1:0"])


def test_a_minimum_session_timeout_above_the_maximum_is_refused():
    message = config_error(overrides=["group.min.session.timeout.ms=2000000"])
    assert "group.min.session.timeout.ms=2000000 (override) exceeds" in message
    assert "group.max.session.timeout.ms=1800000 (default)" in message


def test_a_config_error_carries_the_key():
    with pytest.raises(ConfigError) as info:
        load(overrides=["num.partitions=0"])
    assert info.value.key == "num.partitions"


# --------------------------------------------------------------------------- topic configs


def test_topic_configs_are_kafkas_names_each_with_a_broker_default():
    assert set(TOPIC_CONFIG_KEYS) == {
        "retention.ms",
        "retention.bytes",
        "segment.bytes",
        "segment.ms",
        "max.message.bytes",
        "flush.policy",
        "flush.ms",
        "index.interval.bytes",
        "min.insync.replicas",
        "unclean.leader.election.enable",
        "cleanup.policy",
    }
    assert TOPIC_CONFIG_BROKER_KEYS["retention.ms"] == "log.retention.ms"
    assert TOPIC_CONFIG_BROKER_KEYS["segment.ms"] == "log.roll.ms"
    assert TOPIC_CONFIG_BROKER_KEYS["max.message.bytes"] == "message.max.bytes"
    assert all(b is None or b in SETTINGS_BY_NAME for b in TOPIC_CONFIG_BROKER_KEYS.values())


def test_topic_configs_are_validated_into_typed_values():
    assert validate_topic_configs(
        {
            "retention.ms": "3600000",
            "retention.bytes": "-1",
            "segment.bytes": " 1048576 ",
            "segment.ms": "60000",
            "max.message.bytes": "2000000",
            "flush.policy": "os",
            "min.insync.replicas": "1",
            "cleanup.policy": "delete",
        }
    ) == {
        "retention.ms": 3_600_000,
        "retention.bytes": -1,
        "segment.bytes": 1_048_576,
        "segment.ms": 60_000,
        "max.message.bytes": 2_000_000,
        "flush.policy": "os",
        "min.insync.replicas": 1,
        "cleanup.policy": "delete",
    }
    assert validate_topic_configs({}) == {}


def test_topic_config_values_that_are_not_strings_are_read_as_their_text():
    assert validate_topic_configs({"retention.ms": 5, "segment.bytes": 2048}) == {
        "retention.ms": 5,
        "segment.bytes": 2048,
    }


def topic_error(configs) -> str:
    with pytest.raises(ConfigError) as info:
        validate_topic_configs(configs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_an_unknown_topic_config_names_the_nearest():
    assert topic_error({"retention.msec": "1"}) == (
        "unknown topic config 'retention.msec'; did you mean 'retention.ms'?"
    )


def test_a_broker_key_given_as_topic_config_names_the_topic_key():
    message = topic_error({"log.retention.ms": "1"})
    assert message.startswith(
        "unknown topic config 'log.retention.ms'; did you mean 'retention.ms'?"
    )


def test_compaction_is_a_clear_error():
    for policy in ("compact", "compact,delete", "delete, compact"):
        message = topic_error({"cleanup.policy": policy})
        assert "compaction is not supported" in message
        assert "cleanup.policy=delete" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("retention.ms", "-2", "expected an integer >= -1"),
        ("retention.bytes", "lots", "expected an integer >= -1"),
        ("segment.bytes", "100", "expected an integer in [1024, 2147483647]"),
        ("segment.ms", "0", "expected an integer >= 1"),
        ("max.message.bytes", "1MB", "expected an integer >= 0"),
        ("flush.policy", "never", "expected one of batch, interval, os"),
        ("min.insync.replicas", "0", "expected an integer >= 1"),
        ("cleanup.policy", "remove", "expected delete"),
    ],
)
def test_a_bad_topic_config_value_names_the_key_and_what_is_expected(key, value, expected):
    message = topic_error({key: value})
    assert message.startswith(f"invalid value {value!r} for topic config {key}: ")
    assert expected in message


def test_log_config_merges_topic_configs_over_the_broker_defaults():
    cfg = load(
        overrides=[
            "log.retention.hours=48",
            "log.segment.bytes=1048576",
            "log.flush.policy=interval",
            "log.flush.interval.ms=250",
            "message.max.bytes=4096",
            "log.index.interval.bytes=512",
            "log.roll.ms=3600000",
            "log.retention.bytes=1000000",
        ]
    )
    assert cfg.log_config() == LogConfig(
        segment_bytes=1_048_576,
        segment_ms=3_600_000,
        retention_ms=48 * 3600 * 1000,
        retention_bytes=1_000_000,
        flush_policy="interval",
        flush_interval_ms=250,
        max_batch_bytes=4096,
        index_interval_bytes=512,
    )
    topic = cfg.log_config(
        {"retention.ms": "1000", "segment.bytes": "2048", "flush.policy": "batch",
         "max.message.bytes": "100", "cleanup.policy": "delete"}
    )
    assert topic == LogConfig(
        segment_bytes=2048,
        segment_ms=3_600_000,
        retention_ms=1000,
        retention_bytes=1_000_000,
        flush_policy="batch",
        flush_interval_ms=250,
        max_batch_bytes=100,
        index_interval_bytes=512,
    )


def test_log_config_refuses_bad_topic_configs():
    with pytest.raises(ConfigError, match=r"did you mean 'segment\.bytes'"):
        default_config().log_config({"segment.byte": "4096"})


def test_topic_defaults_follow_the_broker_settings():
    defaults = load(overrides=["message.max.bytes=5000"]).topic_defaults()
    assert set(defaults) == set(TOPIC_CONFIG_KEYS)
    assert defaults["max.message.bytes"] == 5000
    assert defaults["retention.ms"] == WEEK_MS
    assert defaults["cleanup.policy"] == "delete"


# --------------------------------------------------------------------------- SIGHUP


def test_changes_split_into_dynamic_ones_and_ones_that_need_a_restart(tmp_path):
    path = write(tmp_path, "num.partitions=1\nlog.retention.hours=168\nmessage.max.bytes=1000\n")
    old = load(path)
    path.write_text(
        "num.partitions=4\n"
        "log.retention.hours=24\n"
        "message.max.bytes=1000\n"
        "delete.topic.enable=false\n"
        "listeners=tcp://127.0.0.1:9092\n"
    )
    new = old.reload(environ={})
    assert old.dynamic_changes(new) == {
        "log.retention.hours": (168, 24),
        "log.retention.ms": (WEEK_MS, 24 * 3600 * 1000),
        "delete.topic.enable": (True, False),
    }
    assert old.static_changes(new) == {
        "num.partitions": (1, 4),
        "listeners": ("tcp://127.0.0.1:7092,PLAINTEXT://127.0.0.1:9092", "tcp://127.0.0.1:9092"),
    }
    assert old.dynamic_changes(old) == {} and old.static_changes(old) == {}


def test_apply_dynamic_keeps_static_values_and_takes_the_new_dynamic_ones():
    old = load(overrides=["num.partitions=1"])
    new = load(overrides=["num.partitions=4", "log.retention.bytes=1000", "message.max.bytes=2000"])
    running = old.apply_dynamic(new)
    assert running["num.partitions"] == 1
    assert running["log.retention.bytes"] == 1000
    assert running["message.max.bytes"] == 2000
    assert running.source("log.retention.bytes") == "override"
    assert running.dynamic_changes(new) == {}
    assert running.static_changes(new) == {"num.partitions": (1, 4)}


def test_reload_reads_the_same_file_overrides_and_the_given_environment(tmp_path):
    path = write(tmp_path, "num.partitions=2\n")
    cfg = load(path, ["broker.id=3"])
    assert cfg.path == str(path)
    assert cfg.overrides == ("broker.id=3",)
    path.write_text("num.partitions=5\n")
    new = cfg.reload(environ={"RINGLOG_LOG_RETENTION_BYTES": "77"})
    assert (new["num.partitions"], new["broker.id"], new["log.retention.bytes"]) == (5, 3, 77)


def test_a_reload_of_a_broken_file_raises_and_leaves_the_loaded_config_alone(tmp_path):
    path = write(tmp_path, "num.partitions=2\n")
    cfg = load(path)
    path.write_text("num.partitions=two\n")
    with pytest.raises(ConfigError, match="line 1"):
        cfg.reload(environ={})
    assert cfg["num.partitions"] == 2


# --------------------------------------------------------------------------- shipped files


def test_the_shipped_server_properties_means_the_built_in_defaults():
    path = REPO / "config" / "server.properties"
    cfg = load(path)
    assert cfg == default_config()
    # Keys whose default depends on the host stay commented out.
    assert cfg.source("num.workers") == "default"
    assert "\n#num.workers=" in path.read_text()


def test_the_shipped_server_properties_is_what_render_properties_writes():
    # Regenerate with: python -m appliance.config > config/server.properties
    assert (REPO / "config" / "server.properties").read_text() == render_properties(
        default_config()
    )


def test_the_shipped_server_properties_mentions_every_key_with_its_doc():
    text = (REPO / "config" / "server.properties").read_text()
    for setting in SETTINGS:
        assert f"\n{setting.name}=" in text or f"\n#{setting.name}=" in text, setting.name
        assert setting.doc.split()[0] in text


def test_the_single_node_example_keeps_its_data_in_dot_data():
    cfg = load(REPO / "config" / "single-node.properties")
    assert cfg.log_dir == Path("data")
    assert cfg["log.dirs"] == "./data"
    assert cfg.listener_host_port() == ("127.0.0.1", 7092)


def test_render_properties_round_trips_any_config(tmp_path):
    cfg = load(
        overrides=[
            "log.dirs=/srv/ringlog, /srv/spare",
            "num.workers=3",
            "log.retention.minutes=30",
            "zookeeper.connect=zk1:2181,zk2:2181/ringlog",
            "auto.create.topics.enable=false",
            "log.flush.policy=os",
        ]
    )
    path = write(tmp_path, render_properties(cfg), "rendered.properties")
    assert load(path) == cfg


def test_the_configuration_reference_documents_every_key():
    text = (REPO / "docs" / "configuration.md").read_text()
    # Regenerate the tables with: python -m appliance.config --markdown
    assert render_reference_table() in text
    assert render_topic_table() in text
    for setting in SETTINGS:
        assert f"`{setting.name}`" in text
