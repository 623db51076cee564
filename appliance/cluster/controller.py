"""The controller election: one broker of the cluster is the controller, and
every write it makes is fenced by its epoch, as Kafka's controller is in
ZooKeeper mode.

Winning is one ZooKeeper transaction: create the ephemeral /controller
(this broker's id) and raise /controller_epoch, conditional on the version
read. Only one candidate's transaction can succeed; the epoch's znode
version is the fence: every later controller write is a transaction that
first checks that version (`fenced()`), so a controller that was replaced
(its session expired while it was paused or cut off) has its writes
refused with `NotControllerError` instead of overwriting its successor's.

The others watch /controller and stand again when it goes (its holder's
session ended).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError, NoNodeError

from appliance.cluster.znodes import (
    CONTROLLER,
    CONTROLLER_EPOCH,
    ControllerRegistration,
    decode_controller_epoch,
    encode_controller_epoch,
)

log = logging.getLogger("ringlog.cluster")


class NotControllerError(RuntimeError):
    """This broker's controller epoch is no longer the cluster's: another
    broker was elected, and this one's write was refused."""


class ControllerElection:
    """Stands for controller; `on_elected(epoch)` and `on_resigned()` are
    called from kazoo's threads when this broker wins or loses the role."""

    def __init__(self, client: KazooClient, broker_id: int,
                 on_elected: Callable[[int], None] | None = None,
                 on_resigned: Callable[[], None] | None = None):
        self.client = client
        self.broker_id = broker_id
        self.epoch = -1  # the controller epoch this broker won, while it is the controller
        self._epoch_version = -1  # /controller_epoch's znode version at the win: the fence
        self.on_elected = on_elected  # public: the controller's duties attach here
        self.on_resigned = on_resigned
        self._lock = threading.Lock()
        self._closed = False

    @property
    def is_controller(self) -> bool:
        return self.epoch >= 0

    def start(self) -> None:
        """Stand now, and again whenever /controller is deleted."""
        self.client.ensure_path(CONTROLLER_EPOCH)
        self.client.DataWatch(CONTROLLER, self._on_controller_change)

    def controller_id(self) -> int | None:
        """The current controller's broker id, if there is one."""
        try:
            data, _ = self.client.get(CONTROLLER)
        except NoNodeError:
            return None
        return ControllerRegistration.decode(data).broker_id

    def _on_controller_change(self, data: bytes | None, stat, *_) -> bool:
        """kazoo's DataWatch: /controller was created, changed or deleted."""
        if self._closed:
            return False  # stop watching
        if data is None:  # no controller: stand
            if self.is_controller:
                self._resign("the /controller znode went away")
            self.client.handler.spawn(self._stand)
        elif self.is_controller and ControllerRegistration.decode(data).broker_id != \
                self.broker_id:
            self._resign("another broker is the controller")
        return True

    def _stand(self) -> None:
        """elect() on kazoo's handler: a session that ends meanwhile (this
        broker leaving, or losing ZooKeeper) ends the attempt, not the thread."""
        try:
            self.elect()
        except KazooException as exc:
            log.warning("broker %d could not stand for controller: %s", self.broker_id,
                        type(exc).__name__)

    def elect(self) -> bool:
        """Try to become the controller; whether this broker is it now."""
        with self._lock:
            if self._closed or self.is_controller:
                return self.is_controller
            data, stat = self.client.get(CONTROLLER_EPOCH)
            current = decode_controller_epoch(data) if data else 0
            transaction = self.client.transaction()
            transaction.create(CONTROLLER, ControllerRegistration(self.broker_id).encode(),
                               ephemeral=True)
            transaction.set_data(CONTROLLER_EPOCH, encode_controller_epoch(current + 1),
                                 version=stat.version)
            results = transaction.commit()
            if any(isinstance(r, Exception) for r in results):
                # NodeExistsError: another broker is the controller; BadVersionError:
                # another won the epoch between our read and our write.
                if not any(isinstance(r, NodeExistsError | BadVersionError) for r in results):
                    log.warning("controller election failed: %s", results)
                return False
            self.epoch, self._epoch_version = current + 1, stat.version + 1
        log.info("broker %d is the controller (controller epoch %d)", self.broker_id, self.epoch)
        if self.on_elected is not None:
            self.on_elected(self.epoch)
        return True

    def fenced(self, build: Callable) -> list:
        """Commit a transaction of the controller's writes, fenced by its epoch.

        `build(transaction)` adds the writes. If the epoch's version moved (a
        newer controller exists), nothing is written: NotControllerError, and
        this broker resigns. Other failed writes come back as kazoo's
        exceptions in the results, as commit() gives them.
        """
        if not self.is_controller:
            raise NotControllerError(f"broker {self.broker_id} is not the controller")
        transaction = self.client.transaction()
        transaction.check(CONTROLLER_EPOCH, self._epoch_version)
        build(transaction)
        results = transaction.commit()
        if isinstance(results[0], BadVersionError | NoNodeError):
            self._resign("a newer controller epoch exists")
            raise NotControllerError(
                f"broker {self.broker_id}'s controller epoch {self.epoch} was superseded")
        return results[1:]

    def _resign(self, why: str) -> None:
        if not self.is_controller:
            return
        log.warning("broker %d is no longer the controller (epoch %d): %s", self.broker_id,
                    self.epoch, why)
        self.epoch, self._epoch_version = -1, -1
        if self.on_resigned is not None:
            self.on_resigned()

    def close(self) -> None:
        """Stop standing and stop watching: the role goes with the session
        (the caller's to close); a fenced write made after it would be refused."""
        self._closed = True
