"""aiokafka, unmodified, against the Kafka listener."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def round_trip(bootstrap: str, topic: str, codec: str | None) -> tuple[list, list]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec,
                                enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=b"k%d" % i, value=b"v%d" % i,
                                       headers=[("n", b"%d" % i)],
                                       timestamp_ms=1_700_000_000_000 + i)
                   for i in range(100)]
        sent = [await f for f in futures]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        received: list = []
        async with asyncio.timeout(20):
            while len(received) < 100:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    received += batch
    finally:
        await consumer.stop()
    return sent, received


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_records_round_trip_through_aiokafka(kafka_appliance, name, codec):
    sent, received = asyncio.run(round_trip(kafka_appliance.kafka_bootstrap, name, codec))
    assert [m.offset for m in sent] == list(range(100))
    assert [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in received] == [
        (i, b"k%d" % i, b"v%d" % i, [("n", b"%d" % i)], 1_700_000_000_000 + i)
        for i in range(100)]
