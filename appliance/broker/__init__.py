"""The broker core: topics, produce, fetch, offsets, groups and status,
protocol-neutral and sans I/O. Doors (the native ZeroMQ protocol, Kafka's
protocol) adapt their wire to `requests` and `replies`; the supervisor's
loop owns the sockets and drains `Broker.drain()`."""

from appliance.broker.broker import Broker
from appliance.broker.outbox import ClientReply, Event, WorkerMessage
from appliance.broker.readers import PartitionReaders

__all__ = ["Broker", "ClientReply", "Event", "PartitionReaders", "WorkerMessage"]
