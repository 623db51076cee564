"""Kafka's protocol, the broker's second door: framing and ordered responses
per connection (framing), the API table (apis), requests to the broker core
and its replies back (codec, entities, fetch_response), all sans I/O; the
listener owns the sockets inside the supervisor's loop."""

from appliance.kafka.apis import APIS
from appliance.kafka.codec import Decoded, KafkaClient, KafkaDoor, MalformedRequest
from appliance.kafka.framing import Connection, FrameError

__all__ = ["APIS", "Connection", "Decoded", "FrameError", "KafkaClient", "KafkaDoor",
           "MalformedRequest"]
