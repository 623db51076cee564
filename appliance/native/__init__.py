"""The native door: Ringlog's ZeroMQ protocol (appliance.protocol) adapted to
the broker core. `codec` is sans I/O; the supervisor's loop owns the socket."""

from appliance.native.codec import NativeClient, decode_request, encode_reply

__all__ = ["NativeClient", "decode_request", "encode_reply"]
