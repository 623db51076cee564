"""The controller's rules for a partition's leader and in-sync replicas, as
Kafka's PartitionStateMachine and ReplicaStateMachine apply them in
ZooKeeper mode. Pure functions: the caller reads and writes ZooKeeper.

- A new partition: its live replicas, in assignment order, are the ISR; the
  first is the leader, at leader epoch 0.
- Its leader is gone (or it has none): the first replica in assignment
  order that is live and in the ISR leads; the ISR keeps its live members.
  With none, the partition has no leader (clients get LEADER_NOT_AVAILABLE)
  unless unclean election is enabled for it: then the first live replica
  leads, with an ISR of itself, and whatever it lacks is lost.
- A follower in the ISR is gone: it leaves the ISR, the leader stays.
- The ISR is never emptied: when its last live member goes, the old leader
  stays in it (it holds every committed record), so that its return brings
  the partition back without loss.
- Every change the controller writes raises the leader epoch, which fences
  the old leader's writes and tells followers where to truncate.
"""

from __future__ import annotations

from collections.abc import Collection

from appliance.cluster.znodes import NO_LEADER, PartitionState


def initial_state(replicas: tuple[int, ...], live: Collection[int],
                  controller_epoch: int) -> PartitionState:
    isr = tuple(b for b in replicas if b in live)
    return PartitionState(leader=isr[0] if isr else NO_LEADER, leader_epoch=0,
                          isr=isr or replicas[:1], controller_epoch=controller_epoch)


def next_state(replicas: tuple[int, ...], state: PartitionState, live: Collection[int],
               controller_epoch: int, unclean: bool = False) -> PartitionState | None:
    """The partition's state once the live brokers are `live`; None if it
    does not change."""
    live_isr = tuple(b for b in state.isr if b in live)
    if state.leader != NO_LEADER and state.leader in live:
        if live_isr == state.isr:
            return None
        return PartitionState(state.leader, state.leader_epoch + 1, live_isr, controller_epoch)
    leader = next((b for b in replicas if b in live_isr), None)
    if leader is not None:
        return PartitionState(leader, state.leader_epoch + 1, live_isr, controller_epoch)
    if unclean:
        leader = next((b for b in replicas if b in live), None)
        if leader is not None:  # whatever the ISR held and this replica lacks is lost
            return PartitionState(leader, state.leader_epoch + 1, (leader,), controller_epoch)
    kept = (state.leader,) if state.leader in state.isr else state.isr[:1]
    if state.leader == NO_LEADER and kept == state.isr:
        return None  # still no one to lead: nothing to write
    return PartitionState(NO_LEADER, state.leader_epoch + 1, kept, controller_epoch)
