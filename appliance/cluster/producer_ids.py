"""Producer ids unique across the cluster: each broker claims blocks of ids
from /latest_producer_id_block with a conditional write, as Kafka's
ProducerIdManager does in ZooKeeper mode, and hands them out one by one.

A block claimed and not used up is simply skipped after a restart: ids are
never reused, only some are never given.
"""

from __future__ import annotations

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError, NoNodeError

from appliance.cluster.znodes import PRODUCER_ID_BLOCK, ProducerIdBlock
from shm.errors import CoordinatorNotAvailableError

BLOCK_SIZE = 1000  # Kafka's PidBlockSize
CLAIM_ATTEMPTS = 10  # other brokers claiming at once: try again on a version conflict


class ProducerIdBlocks:
    """This broker's current block of producer ids."""

    def __init__(self, client: KazooClient, broker_id: int):
        self.client = client
        self.broker_id = broker_id
        self._next = 0
        self._end = -1  # nothing claimed yet

    def next_id(self) -> int:
        """A producer id no other broker gives (CoordinatorNotAvailableError,
        retriable, if ZooKeeper cannot be reached to claim a block)."""
        if self._next > self._end:
            block = self._claim()
            self._next, self._end = block.start, block.end
        producer_id, self._next = self._next, self._next + 1
        return producer_id

    def _claim(self) -> ProducerIdBlock:
        try:
            for _ in range(CLAIM_ATTEMPTS):
                try:
                    data, stat = self.client.get(PRODUCER_ID_BLOCK)
                except NoNodeError:
                    block = ProducerIdBlock(self.broker_id, 0, BLOCK_SIZE - 1)
                    try:
                        self.client.create(PRODUCER_ID_BLOCK, block.encode())
                        return block
                    except NodeExistsError:
                        continue
                start = ProducerIdBlock.decode(data).end + 1
                block = ProducerIdBlock(self.broker_id, start, start + BLOCK_SIZE - 1)
                try:
                    self.client.set(PRODUCER_ID_BLOCK, block.encode(), version=stat.version)
                    return block
                except BadVersionError:
                    continue
        except KazooException as exc:
            raise CoordinatorNotAvailableError(
                f"cannot claim producer ids from ZooKeeper ({type(exc).__name__}); retry"
            ) from None
        raise CoordinatorNotAvailableError("producer id blocks are contended; retry")
