"""Producer ids come in blocks claimed in ZooKeeper: brokers claiming at the
same time, and one restarted, never hand out the same id."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from appliance.cluster import connect
from appliance.cluster.producer_ids import BLOCK_SIZE, ProducerIdBlocks


def test_brokers_claiming_blocks_at_once_never_share_an_id(zookeeper_connect):
    clients = [connect(zookeeper_connect, 2000) for _ in range(3)]
    try:
        blocks = [ProducerIdBlocks(client, broker_id)
                  for broker_id, client in enumerate(clients, 1)]
        # a broker "restarted": a fresh table on the same id claims a new block
        blocks.append(ProducerIdBlocks(clients[0], 1))

        def take(table: ProducerIdBlocks) -> list[int]:
            return [table.next_id() for _ in range(BLOCK_SIZE + 10)]  # two blocks each

        with ThreadPoolExecutor(len(blocks)) as pool:
            ids = [i for taken in pool.map(take, blocks) for i in taken]
        assert len(ids) == len(set(ids)) == len(blocks) * (BLOCK_SIZE + 10)
    finally:
        for client in clients:
            client.stop()
            client.close()
