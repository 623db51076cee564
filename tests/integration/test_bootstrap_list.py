"""A client given several bootstrap servers uses the first that answers: with
the first one down, admin, producer and consumer all work through the next,
and the cluster it describes is the live broker, its own controller."""

from __future__ import annotations

import time

from appliance.client import Admin, Consumer, Producer
from tests.integration.conftest import free_port
from tests.polling import wait_for


def test_a_bootstrap_server_that_is_down_is_passed_over_for_the_next(appliance):
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    servers = f"{down},{appliance.bootstrap}"
    with Admin(servers, request_timeout_ms=1000) as admin:
        admin.create_topic("listed", partitions=2)
        assert "listed" in admin.list_topics()
        cluster = admin.describe_cluster()
    port = int(appliance.bootstrap.rpartition(":")[2])
    assert cluster == {"brokers": [{"id": 0, "host": "127.0.0.1", "port": port}],
                       "controller_id": 0}

    producer = Producer([down, appliance.bootstrap], acks="all", linger_ms=0,
                        request_timeout_ms=1000)
    offsets = [producer.send("listed", b"v%d" % i, partition=i % 2).result(10).offset
               for i in range(4)]
    producer.close()
    assert offsets == [0, 0, 1, 1]

    with Consumer("listed", bootstrap_servers=servers, auto_offset_reset="earliest",
                  request_timeout_ms=1000) as consumer:
        values, deadline = [], time.monotonic() + 20
        while len(values) < 4 and time.monotonic() < deadline:
            values += [(m.partition, m.value) for m in consumer.poll(500)]
    assert sorted(values) == [(0, b"v0"), (0, b"v2"), (1, b"v1"), (1, b"v3")]


def test_describe_topic_keeps_todays_offsets_beside_what_the_broker_says_of_replicas(appliance):
    with Admin(appliance.bootstrap) as admin:
        admin.create_topic("described", partitions=1)

        def opened() -> dict | None:  # offsets once the worker has opened the partition
            partition = admin.describe_topic("described")["partitions"][0]
            return partition if partition["error"] is None else None

        wait_for(opened, 10, "the partition opened")
        partition = opened()
    assert {"partition", "owner_worker", "log_start_offset", "log_end_offset",
            "high_watermark", "size_bytes"} <= set(partition)
    # a single node leads every partition alone
    assert (partition["leader"], partition["leader_epoch"], partition["replicas"],
            partition["isr"]) == (0, 0, [0], [0])
