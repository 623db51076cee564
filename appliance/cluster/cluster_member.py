"""The supervisor's part in a cluster (`zookeeper.connect` set): its
ZooKeeper session, its registration under /brokers/ids and its candidacy
for controller, whose duty (partition leadership) it takes on when elected.

A single node (`zookeeper.connect` empty) has none of this and imports no
ZooKeeper client. Start-up fails with one line (ClusterError, an OSError)
when ZooKeeper does not answer within the session timeout or this
`broker.id` is taken by a live broker.
"""

from __future__ import annotations

import logging
from typing import Any

from kazoo.exceptions import KazooException, NodeExistsError

from appliance.cluster.controller import ControllerElection
from appliance.cluster.membership import Membership, connect
from appliance.cluster.partition_leadership import PartitionLeadership
from appliance.cluster.znodes import SHUTTING_DOWN, BrokerRegistration
from workers.replicas import WILDCARD_HOSTS

log = logging.getLogger("ringlog.cluster")


class ClusterMember:
    """This broker in its cluster, for as long as the supervisor runs."""

    def __init__(self, membership: Membership, election: ControllerElection,
                 leadership: PartitionLeadership):
        self.membership = membership
        self.election = election
        self.leadership = leadership

    @classmethod
    def join(cls, config: Any, kafka_endpoint: tuple[str, int] | None = None) -> ClusterMember:
        """Connect, register (with the Kafka listener's advertised address,
        if it has one) and stand for controller, as `config` says."""
        session_ms = int(config["zookeeper.session.timeout.ms"])
        host, port = config.listener_host_port("listeners")
        replication_host, replication_port = config.listener_host_port("replication.listener")
        client = connect(config["zookeeper.connect"], session_ms,
                         connect_timeout_s=session_ms / 1000,
                         source_host=None if replication_host in WILDCARD_HOSTS
                         else replication_host)
        broker_id = int(config["broker.id"])
        membership = Membership(client, BrokerRegistration(
            broker_id, f"tcp://{host}:{port}",
            f"tcp://{replication_host}:{replication_port}",
            kafka_endpoint=f"PLAINTEXT://{kafka_endpoint[0]}:{kafka_endpoint[1]}"
            if kafka_endpoint else ""), session_ms)
        try:
            membership.register()
            election = ControllerElection(client, broker_id)
            unclean = bool(config["unclean.leader.election.enable"])
            leadership = PartitionLeadership(election, lambda topic: unclean)
            election.start()
        except BaseException:
            membership.close()
            raise
        return cls(membership, election, leadership)

    def status(self) -> dict:
        """This broker's role, for `ringlog status`."""
        return {"broker_id": self.membership.registration.broker_id,
                "broker_epoch": self.membership.broker_epoch,
                "controller": self.election.is_controller,
                "controller_epoch": self.election.epoch}

    def begin_controlled_shutdown(self) -> bool:
        """Say this broker is shutting down: the controller moves its
        leaderships to other in-sync replicas and takes it out of the ISRs
        (SHUTTING_DOWN). Whether ZooKeeper took it."""
        path = f"{SHUTTING_DOWN}/{self.membership.registration.broker_id}"
        try:
            self.membership.client.create(path, b"", ephemeral=True, makepath=True)
        except NodeExistsError:
            pass
        except KazooException as exc:
            log.warning("controlled shutdown not announced (%s): stopping at once",
                        type(exc).__name__)
            return False
        return True

    def leave(self) -> None:
        """Leave at once: the registration and any controllership go with the session."""
        self.election.close()
        self.membership.close()
