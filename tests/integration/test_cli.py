"""The `ringlog` command line, run as a subprocess against a real appliance."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.conftest import REPO, free_port


def ringlog(bootstrap: str | None, *args: str, stdin: bytes | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `python -m appliance ARGS`; the bootstrap server comes from the environment."""
    env = dict(os.environ)
    env.pop("RINGLOG_BOOTSTRAP_SERVER", None)
    if bootstrap is not None:
        env["RINGLOG_BOOTSTRAP_SERVER"] = bootstrap
    return subprocess.run([sys.executable, "-m", "appliance", *args], input=stdin,
                          capture_output=True, timeout=timeout, cwd=REPO, env=env)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def one_error_line(result: subprocess.CompletedProcess, code: int) -> str:
    """The command failed with `code` and said so in one line, without a traceback."""
    err = result.stderr.decode()
    assert result.returncode == code, (result.returncode, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ringlog: "), err
    return lines[0]


def table(text: str) -> list[list[str]]:
    """A printed table's rows (header first), split on runs of spaces."""
    return [line.split() for line in text.strip().splitlines()]


def test_topics_create_list_describe_alter_delete(appliance):
    bootstrap = appliance.bootstrap
    out = ok(ringlog(bootstrap, "topics", "create", "orders", "--partitions", "3",
                     "--replication-factor", "1", "--config", "retention.ms=3600000"))
    assert out == "Created topic orders.\n"
    assert "orders" in ok(ringlog(bootstrap, "topics", "list")).splitlines()

    ok(ringlog(bootstrap, "produce", "orders", "--partition", "2", stdin=b"a\nb\nc\n"))
    out = ok(ringlog(bootstrap, "topics", "describe", "orders"))
    header, *rows = out.strip().splitlines()
    assert header.startswith("Topic: orders  Partitions: 3  ReplicationFactor: 1")
    assert "retention.ms=3600000" in header
    parsed = table("\n".join(rows))
    assert parsed[0][:8] == ["PARTITION", "LEADER", "REPLICAS", "ISR", "OWNER", "WORKER", "LOG",
                             "START"]
    by_partition = {int(r[0]): r for r in parsed[1:]}
    assert sorted(by_partition) == [0, 1, 2]
    assert by_partition[2][5:8] == ["0", "3", "3"]  # log start, log end, high watermark
    assert by_partition[0][5:8] == ["0", "0", "0"]
    assert {by_partition[p][4] for p in by_partition} <= {"0", "1"}  # owner: one of 2 workers

    out = ok(ringlog(bootstrap, "topics", "alter", "orders", "--config", "retention.ms=1000",
                     "--config", "segment.bytes=1048576"))
    assert out.startswith("Updated topic orders:")
    header = ok(ringlog(bootstrap, "topics", "describe", "orders")).splitlines()[0]
    assert "retention.ms=1000" in header and "segment.bytes=1048576" in header
    out = ok(ringlog(bootstrap, "topics", "alter", "orders", "--delete-config", "segment.bytes"))
    assert out == "Updated topic orders: retention.ms=1000\n"  # segment.bytes: the default
    line = one_error_line(ringlog(bootstrap, "topics", "alter", "orders", "--delete-config",
                                  "segment.byte"), 1)
    assert "INVALID_CONFIG" in line and "segment.bytes" in line  # the nearest name

    assert ok(ringlog(bootstrap, "topics", "delete", "orders")) == "Deleted topic orders.\n"
    assert "orders" not in ok(ringlog(bootstrap, "topics", "list")).splitlines()
    line = one_error_line(ringlog(bootstrap, "topics", "delete", "orders"), 1)
    assert "UNKNOWN_TOPIC_OR_PARTITION" in line


def test_topic_errors_from_the_appliance_are_one_line(appliance):
    bootstrap = appliance.bootstrap
    ok(ringlog(bootstrap, "topics", "create", "once", "--partitions", "1"))
    line = one_error_line(ringlog(bootstrap, "topics", "create", "once", "--partitions", "1"), 1)
    assert "TOPIC_ALREADY_EXISTS" in line
    line = one_error_line(ringlog(bootstrap, "topics", "create", "no way!", "--partitions", "1"),
                          1)
    assert "INVALID_TOPIC_EXCEPTION" in line
    line = one_error_line(ringlog(bootstrap, "topics", "create", "rf", "--partitions", "1",
                                  "--replication-factor", "3"), 1)
    assert "INVALID_REPLICATION_FACTOR" in line
    line = one_error_line(ringlog(bootstrap, "topics", "alter", "once",
                                  "--config", "no.such.config=1"), 1)
    assert "INVALID_CONFIG" in line


def test_describe_of_an_unknown_topic_is_one_line_and_exit_1(appliance):
    line = one_error_line(ringlog(appliance.bootstrap, "topics", "describe", "nope"), 1)
    assert "nope" in line and "UNKNOWN_TOPIC_OR_PARTITION" in line


def test_keyed_lines_produced_from_stdin_come_back_with_keys_and_offsets(appliance):
    bootstrap = appliance.bootstrap
    ok(ringlog(bootstrap, "topics", "create", "greetings", "--partitions", "3"))
    lines = [f"user-{i % 5}:hello {i}" for i in range(30)]
    result = ringlog(bootstrap, "produce", "greetings", "--key-separator", ":", "--acks", "all",
                     stdin="\n".join(lines).encode() + b"\n")
    assert ok(result) == "" and result.stderr == b""  # silent on success

    out = ok(ringlog(bootstrap, "consume", "greetings", "--from-beginning",
                     "--max-messages", "30", "--timeout-ms", "20000",
                     "--print-partition", "--print-offset", "--print-key"))
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 30 and all(len(r) == 4 for r in rows)
    got = [(r[2], r[3]) for r in rows]
    assert sorted(got) == sorted(tuple(line.split(":", 1)) for line in lines)
    partition_of_key: dict[str, str] = {}
    offsets: dict[str, list[int]] = {}
    for partition, offset, key, _ in rows:
        assert partition.startswith("Partition:") and offset.startswith("Offset:")
        assert partition_of_key.setdefault(key, partition) == partition  # a key, a partition
        offsets.setdefault(partition, []).append(int(offset.removeprefix("Offset:")))
    for found in offsets.values():
        assert found == list(range(len(found)))  # every partition in order, from offset 0
    # values in send order within each key
    for k in range(5):
        assert [v for key, v in got if key == f"user-{k}"] == \
            [line.split(":", 1)[1] for line in lines if line.startswith(f"user-{k}:")]


def test_consume_prints_values_only_by_default_and_timestamps_when_asked(appliance):
    bootstrap = appliance.bootstrap
    ok(ringlog(bootstrap, "topics", "create", "plain", "--partitions", "1"))
    before_ms = int(time.time() * 1000)
    ok(ringlog(bootstrap, "produce", "plain", stdin=b"one\n\ntwo with spaces\nthree"))
    out = ok(ringlog(bootstrap, "consume", "plain", "--from-beginning", "--max-messages", "4",
                     "--timeout-ms", "20000"))
    assert out.splitlines() == ["one", "", "two with spaces", "three"]
    out = ok(ringlog(bootstrap, "consume", "plain", "--from-beginning", "--max-messages", "1",
                     "--timeout-ms", "20000", "--print-timestamp", "--print-key",
                     "--key-separator", "|"))
    stamp, key, value = out.strip().split("|")
    assert stamp.startswith("CreateTime:") and key == "null" and value == "one"
    assert before_ms <= int(stamp.removeprefix("CreateTime:")) <= int(time.time() * 1000)


def test_partition_and_offset_select_where_consume_starts(appliance):
    bootstrap = appliance.bootstrap
    ok(ringlog(bootstrap, "topics", "create", "numbers", "--partitions", "2"))
    ok(ringlog(bootstrap, "produce", "numbers", "--partition", "1", "--acks", "1",
               stdin=b"".join(b"%d\n" % i for i in range(10))))

    out = ok(ringlog(bootstrap, "consume", "numbers", "--partition", "1", "--offset", "7",
                     "--print-offset", "--timeout-ms", "1500"))
    assert out.splitlines() == ["Offset:7\t7", "Offset:8\t8", "Offset:9\t9"]
    out = ok(ringlog(bootstrap, "consume", "numbers", "--partition", "1", "--from-beginning",
                     "--max-messages", "2", "--timeout-ms", "20000"))
    assert out.splitlines() == ["0", "1"]
    # without --from-beginning, --partition starts at the end: nothing old is printed
    assert ok(ringlog(bootstrap, "consume", "numbers", "--partition", "1",
                      "--timeout-ms", "1000")) == ""
    assert ok(ringlog(bootstrap, "consume", "numbers", "--partition", "0", "--from-beginning",
                      "--timeout-ms", "1000")) == ""
    line = one_error_line(ringlog(bootstrap, "consume", "numbers", "--partition", "2",
                                  "--from-beginning", "--timeout-ms", "1000"), 1)
    assert "no partition 2" in line


def test_a_line_without_the_key_separator_stops_produce(appliance):
    bootstrap = appliance.bootstrap
    ok(ringlog(bootstrap, "topics", "create", "strict", "--partitions", "1"))
    result = ringlog(bootstrap, "produce", "strict", "--key-separator", ":",
                     stdin=b"a:1\nb:2\nno separator here\nc:3\n")
    line = one_error_line(result, 2)
    assert "line 3" in line
    out = ok(ringlog(bootstrap, "consume", "strict", "--from-beginning", "--print-key",
                     "--timeout-ms", "1500"))
    assert out.splitlines() == ["a\t1", "b\t2"]  # what came before was sent, nothing after


def test_status_shows_workers_and_partitions(appliance):
    bootstrap = appliance.bootstrap
    ok(ringlog(bootstrap, "topics", "create", "watched", "--partitions", "2"))
    ok(ringlog(bootstrap, "produce", "watched", "--partition", "0", stdin=b"x\ny\n"))
    out = ok(ringlog(None, "status", "--bootstrap-server", bootstrap))
    first = out.splitlines()[0]
    assert "Workers ready: 2" in first and bootstrap in first
    rows = {(r[0], r[1]): r for r in table(out) if r and r[0] == "watched"}
    assert set(rows) == {("watched", "0"), ("watched", "1")}
    assert rows[("watched", "0")][3:6] == ["0", "2", "2"]  # log start, log end, HW


def test_groups_share_the_work_and_describe_shows_lag(appliance):
    bootstrap = appliance.bootstrap
    ok(ringlog(bootstrap, "topics", "create", "jobs", "--partitions", "1"))
    ok(ringlog(bootstrap, "produce", "jobs", stdin=b"".join(b"job%d\n" % i for i in range(6))))
    first = ringlog(bootstrap, "consume", "jobs", "--group", "workers", "--from-beginning",
                    "--max-messages", "4", "--timeout-ms", "20000")
    if first.returncode == 2 and b"not served yet" in first.stderr:
        one_error_line(first, 2)  # groups not there yet: one clear line
        return
    assert ok(first).splitlines() == ["job0", "job1", "job2", "job3"]
    # the group committed its position: a second run goes on where the first stopped
    out = ok(ringlog(bootstrap, "consume", "jobs", "--group", "workers", "--from-beginning",
                     "--timeout-ms", "3000"))
    assert out.splitlines() == ["job4", "job5"]

    listed = table(ok(ringlog(bootstrap, "groups", "list")))
    assert listed[0] == ["GROUP", "STATE", "MEMBERS"]
    assert "workers" in [row[0] for row in listed[1:]]
    described = ok(ringlog(bootstrap, "groups", "describe", "workers"))
    assert described.startswith("Group: workers")
    rows = [r for r in table(described) if r and r[0] == "jobs"]
    assert rows == [["jobs", "0", "6", "6", "0", "-"]]  # committed, high watermark, lag

    ok(ringlog(bootstrap, "produce", "jobs", stdin=b"job6\njob7\n"))
    rows = [r for r in table(ok(ringlog(bootstrap, "groups", "describe", "workers")))
            if r and r[0] == "jobs"]
    assert rows == [["jobs", "0", "6", "8", "2", "-"]]
    line = one_error_line(ringlog(bootstrap, "groups", "describe", "nobody"), 1)
    assert "nobody" in line


def test_a_dead_server_fails_fast_with_one_line():
    dead = f"127.0.0.1:{free_port()}"
    for args, stdin in ((["topics", "list"], None), (["topics", "describe", "x"], None),
                        (["status"], None), (["groups", "list"], None),
                        (["produce", "x"], b"record\n")):
        started = time.monotonic()
        result = ringlog(dead, *args, "--timeout-ms", "500", stdin=stdin, timeout=30)
        elapsed = time.monotonic() - started
        line = one_error_line(result, 1)
        assert dead in line and "REQUEST_TIMED_OUT" in line, line
        assert elapsed < 10, (args, elapsed)
    started = time.monotonic()
    result = ringlog(dead, "consume", "x", "--request-timeout-ms", "500", timeout=30)
    assert dead in one_error_line(result, 1)
    assert time.monotonic() - started < 10


def test_usage_errors_are_one_line_and_exit_2():
    bootstrap = f"127.0.0.1:{free_port()}"  # never contacted: the arguments are refused first
    for args, command in (
            (["topics", "create", "t", "--partitions", "1", "--config", "retention.ms"],
             "topics create"),
            (["topics", "alter", "t", "--config", "=1"], "topics alter"),
            (["topics", "create", "t"], "topics create"),  # --partitions is required
            (["topics", "create"], "topics create"),
            (["topics", "--bad-flag"], "topics"),
            (["nosuchcommand"], ""),
            (["consume"], "consume"),
            (["consume", "t", "--offset", "3"], "consume"),  # --offset needs --partition
            (["consume", "t", "--partition", "0", "--offset", "minus one"], "consume"),
            (["produce", "t", "--acks", "2"], "produce"),
            (["groups", "describe"], "groups describe"),
            (["perf", "produce", "--num-records", "10"], "perf produce"),
            (["topics", "list", "--bootstrap-server", "no-port"], "topics list")):
        line = one_error_line(ringlog(bootstrap, *args, timeout=30), 2)
        help_command = " ".join(filter(None, ["python -m appliance", command]))
        assert line.endswith(f"; see '{help_command} --help'"), (args, line)


def test_the_installed_ringlog_command_names_itself_in_the_fix():
    script = Path(sys.executable).with_name("ringlog")  # the console script pip installed
    result = subprocess.run([str(script), "topics", "create", "x"], capture_output=True,
                            timeout=30, cwd=REPO)
    assert one_error_line(result, 2) == \
        "ringlog: Missing option '--partitions'; see 'ringlog topics create --help'"
    assert result.stdout == b""


def test_ctrl_c_ends_consume_quietly(appliance):
    ok(ringlog(appliance.bootstrap, "produce", "live", stdin=b"first\n"))
    # PYTHONFAULTHANDLER: if it ever outlives the SIGINT, SIGABRT prints where
    # each of its threads is.
    env = {**os.environ, "RINGLOG_BOOTSTRAP_SERVER": appliance.bootstrap,
           "PYTHONFAULTHANDLER": "1"}
    # SIGINT as a terminal's foreground job has it: a suite started in the
    # background by a shell without job control inherits SIGINT ignored, and
    # Python then rightly leaves it ignored (that is how nohup'd jobs stay up).
    process = subprocess.Popen([sys.executable, "-m", "appliance", "consume", "live",
                                "--from-beginning"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert process.stdout.readline() == b"first\n"  # it is running and polling
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            _, stacks = process.communicate(timeout=10)
            raise AssertionError("consume outlived Ctrl-C by 30 s; its threads:\n"
                                 + stacks.decode(errors="replace")) from None
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and err == b"" and out == b""


def test_a_closed_stdout_ends_consume_quietly(appliance):
    bootstrap = appliance.bootstrap
    ok(ringlog(bootstrap, "topics", "create", "many", "--partitions", "1"))
    ok(ringlog(bootstrap, "produce", "many", "--acks", "1",
               stdin=b"".join(b"record number %06d\n" % i for i in range(20000))))
    env = {**os.environ, "RINGLOG_BOOTSTRAP_SERVER": bootstrap}
    # like `ringlog consume many --from-beginning | head -1`: far more than a pipe holds
    process = subprocess.Popen([sys.executable, "-m", "appliance", "consume", "many",
                                "--from-beginning"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout.readline() == b"record number 000000\n"
        process.stdout.close()
        err = process.stderr.read()
        process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and err == b""
