"""Idempotent producers of either Kafka client retry batches whose response
was lost (a proxy closes the connection in its place): the broker answers
a duplicate with its original offsets and stores it once."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaProducer

from loadtest.harness import free_port, shared_across_tests
from tests.integration.conftest import start_appliance
from tests.kafka.proxy import ResponseDroppingProxy

RECORDS = 400
DROPS = 3


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """An appliance whose metadata sends Kafka clients through the proxy."""
    kafka_port, proxy_port = free_port(), free_port()
    appliance = shared_across_tests(start_appliance(
        tmp_path_factory.mktemp("proxied"),
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{proxy_port}", kafka_port=kafka_port))
    proxy = ResponseDroppingProxy(proxy_port, ("127.0.0.1", kafka_port))
    try:
        yield proxy
        assert appliance.stop() == 0, appliance.stderr_tail()
    finally:
        proxy.close()
        if appliance.process.poll() is None:
            appliance.kill()


def values_in(bootstrap: str, topic: str) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            if len(values) >= RECORDS:
                break
            continue
        if not message.error():
            values.append(message.value())
    consumer.close()
    return values


def sent_values() -> list[bytes]:
    return [b"r%04d" % i for i in range(RECORDS)]


def produce_with(client: str, bootstrap: str, topic: str) -> None:
    """Every value once, to partition 0, with the client's idempotent producer."""
    if client == "confluent-kafka":
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                             "linger.ms": 2, "batch.num.messages": 20})
        errors: list = []
        for value in sent_values():
            producer.produce(topic, value=value, partition=0,
                             on_delivery=lambda e, _m: e and errors.append(e))
            producer.poll(0)
        assert producer.flush(30) == 0 and errors == []
    else:
        producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                 linger_ms=2, batch_size=200)
        futures = [producer.send(topic, value=v, partition=0) for v in sent_values()]
        producer.flush(30)
        for future in futures:
            future.get(timeout=1)
        producer.close()


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_a_retried_batch_is_stored_once(proxied, name, client):
    proxied.arm(DROPS)
    bootstrap = f"127.0.0.1:{proxied.port}"  # metadata names the proxy too
    produce_with(client, bootstrap, name)
    assert proxied.dropped == DROPS
    assert values_in(bootstrap, name) == sent_values()  # each once, in order
