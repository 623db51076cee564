"""kcat (librdkafka 2.0 from Debian), unmodified: -L, -P, -C against the
Kafka listener (-G, groups, in test_consumer_groups)."""

from __future__ import annotations

import subprocess


def kcat(bootstrap: str, *args: str, stdin: bytes = b"", timeout: float = 30) -> str:
    done = subprocess.run(["kcat", "-b", bootstrap, *args], input=stdin, capture_output=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()


def test_kcat_lists_produces_and_consumes_with_compression(kafka_appliance, name):
    bootstrap = kafka_appliance.kafka_bootstrap
    lines = b"".join(b"key%d:value %d\n" % (i, i) for i in range(50))
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        kcat(bootstrap, "-P", "-t", name, "-K:", "-z", codec, stdin=lines)
    listing = kcat(bootstrap, "-L", "-t", name)
    assert f'topic "{name}" with 1 partitions' in listing
    assert f"broker 0 at {bootstrap}" in listing
    out = kcat(bootstrap, "-C", "-t", name, "-e", "-f", "%o %k %s\n")
    assert out.splitlines() == [f"{i} key{i % 50} value {i % 50}" for i in range(200)]
    tail = kcat(bootstrap, "-C", "-t", name, "-o", "-3", "-e", "-f", "%o\n")
    assert tail.split() == ["197", "198", "199"]
