"""Server-side partition assignment strategies for consumer groups.

Every assignor is a pure function with one signature::

    assign(subscriptions, partitions, current) -> {member_id: {(topic, partition), ...}}

- ``subscriptions`` maps member id -> the topics it subscribes to;
- ``partitions`` maps topic -> partition count (a topic missing from it, or with a
  count of 0 or less, has no partitions to assign: it is unknown or deleted);
- ``current`` maps member id -> the partitions it holds now (empty or missing for a
  new member). Only the sticky assignor looks at it.

The result has one entry for every member of ``subscriptions`` (possibly an empty
set), and every partition of every subscribed topic is in exactly one member's set,
a member subscribed to its topic. Results are deterministic: they depend only on
the arguments, never on dict order or randomness.

``range_assign`` and ``round_robin_assign`` reproduce Kafka's ``RangeAssignor`` and
``RoundRobinAssignor``. ``cooperative_sticky_assign`` follows Kafka's
``CooperativeStickyAssignor``: balanced first, sticky second (see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

TopicPartition = tuple[str, int]
Assignment = dict[str, set[TopicPartition]]
Assignor = Callable[
    [Mapping[str, Sequence[str]], Mapping[str, int], Mapping[str, set[TopicPartition]]],
    Assignment,
]

__all__ = [
    "ASSIGNORS",
    "DEFAULT_ASSIGNOR",
    "Assignment",
    "Assignor",
    "TopicPartition",
    "cooperative_sticky_assign",
    "range_assign",
    "round_robin_assign",
]


def _count(partitions: Mapping[str, int], topic: str) -> int:
    n = partitions.get(topic)
    return n if isinstance(n, int) and n > 0 else 0


def _subscribers(subscriptions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """topic -> sorted member ids subscribed to it."""
    by_topic: dict[str, list[str]] = {}
    for member in sorted(subscriptions):
        for topic in set(subscriptions[member]):
            by_topic.setdefault(topic, []).append(member)
    return by_topic


def range_assign(
    subscriptions: Mapping[str, Sequence[str]],
    partitions: Mapping[str, int],
    current: Mapping[str, set[TopicPartition]] | None = None,
) -> Assignment:
    """Kafka's RangeAssignor: topic by topic, contiguous ranges.

    For each topic, its subscribers are sorted by member id and its partitions are
    cut into contiguous ranges, one per subscriber in that order; when the count does
    not divide evenly the first ``n % m`` subscribers get one partition more. With
    C0, C1 both on t0, t1 of 3 partitions each: C0 gets t0p0, t0p1, t1p0, t1p1 and
    C1 gets t0p2, t1p2.
    """
    result: Assignment = {member: set() for member in subscriptions}
    for topic, members in sorted(_subscribers(subscriptions).items()):
        n = _count(partitions, topic)
        per_member, extra = divmod(n, len(members))
        for i, member in enumerate(members):
            start = per_member * i + min(i, extra)
            length = per_member + (1 if i < extra else 0)
            result[member].update((topic, p) for p in range(start, start + length))
    return result


def round_robin_assign(
    subscriptions: Mapping[str, Sequence[str]],
    partitions: Mapping[str, int],
    current: Mapping[str, set[TopicPartition]] | None = None,
) -> Assignment:
    """Kafka's RoundRobinAssignor: all partitions dealt in turn to sorted members.

    The partitions of all subscribed topics, sorted by topic then partition, are
    dealt one by one to the members in member-id order, cyclically; a member not
    subscribed to a partition's topic is skipped (and the deal continues from the
    member after the one that took it, as Kafka's circular iterator does).
    """
    result: Assignment = {member: set() for member in subscriptions}
    members = sorted(subscriptions)
    if not members:
        return result
    topics_of = {member: set(subscriptions[member]) for member in members}
    position = 0
    for topic in sorted(_subscribers(subscriptions)):
        for p in range(_count(partitions, topic)):
            while topic not in topics_of[members[position]]:
                position = (position + 1) % len(members)
            result[members[position]].add((topic, p))
            position = (position + 1) % len(members)
    return result


def cooperative_sticky_assign(
    subscriptions: Mapping[str, Sequence[str]],
    partitions: Mapping[str, int],
    current: Mapping[str, set[TopicPartition]] | None = None,
) -> Assignment:
    """Kafka's (Cooperative)StickyAssignor: balanced first, then as sticky as possible.

    1. Keep: every member keeps the partitions of ``current`` that still exist and
       whose topic it still subscribes to. A partition claimed by two members (stale
       input) stays with the member whose id sorts first.
    2. Place: the remaining partitions (a departed member's, new ones, unsubscribed
       ones) go one by one to the least loaded eligible member (fewest partitions,
       then smallest id); partitions with fewer eligible members are placed first,
       then in (topic, partition) order.
    3. Balance: while some member holds a partition that an eligible member with at
       least two fewer partitions could take, move one: from the most loaded giver to
       the least loaded receiver that can take one of its partitions (ties broken by
       member id), taking the highest such (topic, partition) of the giver.

    The result is balanced in Kafka's sense: no partition can move to an eligible
    member that holds two or more fewer partitions than its owner. In particular
    members with the same subscriptions differ by at most one partition. When all
    members subscribe to the same topics, the number of partitions that change owner
    is the minimum any balanced assignment needs: a member keeps every partition it
    holds unless balance requires moving it, so a member joining takes only its fair
    share from the most loaded members, and a member leaving moves only its own
    partitions. Each move strictly decreases the sum of squared loads, so step 3 ends.
    """
    current = current or {}
    members = sorted(subscriptions)
    topics_of = {member: frozenset(subscriptions[member]) for member in members}
    eligible = {
        topic: subscribers
        for topic, subscribers in _subscribers(subscriptions).items()
        if _count(partitions, topic)
    }
    result: Assignment = {member: set() for member in members}

    # 1. keep what is still valid
    owner: dict[TopicPartition, str] = {}
    for member in members:
        for tp in sorted(current.get(member, ()) or ()):
            topic, p = tp
            if (
                topic in topics_of[member]
                and topic in eligible
                and isinstance(p, int)
                and 0 <= p < _count(partitions, topic)
                and tp not in owner
            ):
                owner[tp] = member
                result[member].add((topic, p))

    # 2. place the rest on the least loaded eligible members
    free = [
        (topic, p)
        for topic in sorted(eligible)
        for p in range(_count(partitions, topic))
        if (topic, p) not in owner
    ]
    free.sort(key=lambda tp: (len(eligible[tp[0]]), tp))
    for tp in free:
        member = min(eligible[tp[0]], key=lambda m: (len(result[m]), m))
        result[member].add(tp)

    # 3. balance with the fewest moves
    while _balance_step(result, topics_of):
        pass
    return result


def _balance_step(result: Assignment, topics_of: Mapping[str, frozenset[str]]) -> bool:
    """Move one partition from a most loaded giver to a least loaded receiver.

    Returns False when no partition can move to an eligible member holding two or
    more fewer partitions than its owner (the assignment is balanced).
    """
    by_load_desc = sorted(result, key=lambda m: (-len(result[m]), m))
    by_load_asc = sorted(result, key=lambda m: (len(result[m]), m))
    for giver in by_load_desc:
        giver_load = len(result[giver])
        for receiver in by_load_asc:
            if len(result[receiver]) + 1 >= giver_load:
                break  # receivers are ascending: nobody further is light enough
            movable = [tp for tp in result[giver] if tp[0] in topics_of[receiver]]
            if movable:
                tp = max(movable)
                result[giver].remove(tp)
                result[receiver].add(tp)
                return True
    return False


ASSIGNORS: dict[str, Assignor] = {
    "range": range_assign,
    "roundrobin": round_robin_assign,
    "cooperative-sticky": cooperative_sticky_assign,
}
DEFAULT_ASSIGNOR = "cooperative-sticky"
