"""What Kafka clients committed and produced survives a broker restart."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition

from loadtest.harness import free_port
from tests.integration.conftest import start_appliance


def test_committed_offsets_and_records_survive_a_restart(tmp_path):
    port, kafka_port = free_port(), free_port()
    appliance = start_appliance(tmp_path, port=port, kafka_port=kafka_port)
    producer = Producer({"bootstrap.servers": appliance.kafka_bootstrap, "acks": "all"})
    for i in range(20):
        producer.produce("kept", value=b"%d" % i, partition=0)
    assert producer.flush(20) == 0
    consumer = Consumer({"bootstrap.servers": appliance.kafka_bootstrap, "group.id": "keeper",
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition("kept", 0, 13)], asynchronous=False)
    consumer.close()
    assert appliance.stop() == 0

    appliance = start_appliance(tmp_path, port=port, kafka_port=kafka_port)
    consumer = Consumer({"bootstrap.servers": appliance.kafka_bootstrap, "group.id": "keeper",
                         "enable.auto.commit": False})
    [committed] = consumer.committed([TopicPartition("kept", 0)], timeout=20)
    assert committed.offset == 13
    assert consumer.get_watermark_offsets(TopicPartition("kept", 0), timeout=10) == (0, 20)
    consumer.close()
    assert appliance.stop() == 0
