"""This broker's place in the cluster: its ZooKeeper session and its
registration under /brokers/ids, kept across sessions, as Kafka's brokers
register in ZooKeeper mode.

The registration is an ephemeral znode: ZooKeeper deletes it when the
broker's session ends (a clean close at once, a crash after
`zookeeper.session.timeout.ms`), which is how the controller learns that a
broker is gone. kazoo does not recreate ephemeral znodes after a session
expires, so a new session registers again here, with a new broker epoch
(the znode's czxid), and the caller is told.

A broker restarted faster than its old session expires finds its id still
registered by that session: it waits, up to the session timeout and a
margin, for the old znode to go, and refuses to start only if it stays (a
second live broker with the same `broker.id`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError, SequentialThreadingHandler
from kazoo.handlers.utils import create_tcp_connection

from appliance.cluster.znodes import BROKER_IDS, PERSISTENT_PATHS, BrokerRegistration, broker_path

log = logging.getLogger("ringlog.cluster")

REGISTRATION_MARGIN_S = 5.0  # past the session timeout, an old registration is someone else's


class ClusterError(OSError):
    """ZooKeeper could not be reached, or refused what this broker needs: a
    start-up failure said in one line, never an error sent to clients."""


def split_connect(zookeeper_connect: str) -> tuple[str, str]:
    """`host:port[,host:port...][/chroot]` -> (hosts, chroot or '')."""
    hosts, slash, chroot = zookeeper_connect.partition("/")
    if not hosts:
        raise ClusterError(f"zookeeper.connect={zookeeper_connect!r} names no host; "
                           "set it to host:port[,host:port...][/chroot]")
    return hosts, (slash + chroot).rstrip("/")


def connect(zookeeper_connect: str, session_timeout_ms: int,
            connect_timeout_s: float = 15.0, source_host: str | None = None) -> KazooClient:
    """A started kazoo client, rooted at the chroot (created if missing);
    its connections leave from `source_host` when one is given."""
    hosts, chroot = split_connect(zookeeper_connect)
    handler = None if source_host is None else SourceBoundHandler(source_host)
    if chroot:
        root = KazooClient(hosts=hosts, timeout=session_timeout_ms / 1000,
                           handler=SourceBoundHandler(source_host) if source_host else None)
        _start(root, hosts, connect_timeout_s)
        try:
            root.ensure_path(chroot)
        finally:
            root.stop()
            root.close()
    client = KazooClient(hosts=hosts + chroot, timeout=session_timeout_ms / 1000,
                         handler=handler)
    _start(client, hosts, connect_timeout_s)
    for path in PERSISTENT_PATHS:
        client.ensure_path(path)
    return client


class _SourceBoundSocket:
    """The socket module, except that connections leave from one address."""

    def __init__(self, source_host: str):
        self.source_host = source_host

    def __getattr__(self, name: str):
        return getattr(socket, name)

    def create_connection(self, address, timeout=None):
        return socket.create_connection(address, timeout, source_address=(self.source_host, 0))


class SourceBoundHandler(SequentialThreadingHandler):
    """kazoo's threading handler with ZooKeeper connections from this
    broker's own address: a fault test that cuts the broker's address from
    ZooKeeper's with iptables then cuts its session too."""

    def __init__(self, source_host: str):
        super().__init__()
        self._socket = _SourceBoundSocket(source_host)

    def create_connection(self, *args, **kwargs):
        return create_tcp_connection(self._socket, *args, **kwargs)


def _start(client: KazooClient, hosts: str, timeout_s: float) -> None:
    try:
        client.start(timeout=timeout_s)
    except KazooTimeoutError:
        client.close()
        raise ClusterError(f"ZooKeeper at {hosts} did not answer within {timeout_s:.0f} s; "
                           "is it running, and is zookeeper.connect right?") from None


class Membership:
    """Keeps `registration` in /brokers/ids for as long as the session lives,
    and registers again after a new one; `on_registered(broker_epoch)` is
    called (from kazoo's thread) after each registration after the first."""

    def __init__(self, client: KazooClient, registration: BrokerRegistration,
                 session_timeout_ms: int,
                 on_registered: Callable[[int], None] | None = None):
        self.client = client
        self.registration = registration
        self.session_timeout_s = session_timeout_ms / 1000
        self.broker_epoch = -1
        self._on_registered = on_registered
        self._lost = threading.Event()
        self._closed = False
        client.add_listener(self._on_state)

    @property
    def path(self) -> str:
        return broker_path(self.registration.broker_id)

    def register(self) -> int:
        """Create the registration znode; the broker epoch (its czxid)."""
        deadline = time.monotonic() + self.session_timeout_s + REGISTRATION_MARGIN_S
        while True:
            try:
                self.client.create(self.path, self.registration.encode(), ephemeral=True)
                break
            except NodeExistsError:
                if self._owned():
                    break  # ours: created just before a connection loss hid the reply
                if time.monotonic() >= deadline:
                    raise ClusterError(
                        f"broker.id {self.registration.broker_id} is registered in ZooKeeper "
                        f"by another live broker ({self._holder()}); give each broker a "
                        "broker.id of its own") from None
                time.sleep(0.2)  # a previous life's session has not expired yet
        stat = self.client.exists(self.path)
        self.broker_epoch = stat.czxid if stat is not None else -1
        log.info("registered as broker %d (broker epoch %d)", self.registration.broker_id,
                 self.broker_epoch)
        return self.broker_epoch

    def _owned(self) -> bool:
        stat = self.client.exists(self.path)
        return stat is not None and stat.ephemeralOwner == self.client.client_id[0]

    def _holder(self) -> str:
        try:
            data, _ = self.client.get(self.path)
            return BrokerRegistration.decode(self.registration.broker_id, data).client_endpoint
        except (NoNodeError, ValueError):
            return "unknown"

    def live_brokers(self) -> dict[int, BrokerRegistration]:
        """Every registered broker, by id."""
        brokers = {}
        for child in self.client.get_children(BROKER_IDS):
            try:
                data, _ = self.client.get(f"{BROKER_IDS}/{child}")
                brokers[int(child)] = BrokerRegistration.decode(int(child), data)
            except (NoNodeError, ValueError):
                continue  # gone between the listing and the read, or not a broker
        return brokers

    def _on_state(self, state: str) -> None:
        """kazoo's session listener: it must not block, so re-registering
        runs on a thread of kazoo's handler."""
        if state == KazooState.LOST:
            self._lost.set()
            log.warning("ZooKeeper session lost: broker %d is unregistered until a new "
                        "session", self.registration.broker_id)
        elif state == KazooState.CONNECTED and self._lost.is_set() and not self._closed:
            self._lost.clear()
            self.client.handler.spawn(self._register_again)

    def _register_again(self) -> None:
        try:
            epoch = self.register()
        except (ClusterError, KazooException) as exc:
            log.error("could not register again after a new ZooKeeper session: %s", exc)
            return
        if self._on_registered is not None:
            self._on_registered(epoch)

    def close(self) -> None:
        """Leave the cluster at once (the znode goes with the session)."""
        self._closed = True
        self.client.remove_listener(self._on_state)
        self.client.stop()
        self.client.close()
