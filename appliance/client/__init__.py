"""The Python client: Producer, Consumer and Admin, as Kafka's Python users know them.

It imports only the protocol and the record codec, never server code.
"""

from appliance.client.admin import Admin
from appliance.client.connection import Connection
from appliance.client.consumer import Consumer, Message
from appliance.client.producer import Producer, RecordMetadata

__all__ = ["Admin", "Connection", "Consumer", "Message", "Producer", "RecordMetadata"]
