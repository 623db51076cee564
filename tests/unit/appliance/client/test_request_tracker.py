"""The client's request tracker, with replies handed in and time as numbers:
which reply settles which request, what is kept, what is dropped, what expires."""

from __future__ import annotations

import pytest

from appliance.client.request_tracker import RequestTracker
from appliance.protocol import NO_ID, Response


def reply(request_id: int, **fields) -> Response:
    return Response("fetch", request_id, None, "", fields)


def sent(tracker: RequestTracker, value=None, deadline: float | None = None) -> int:
    request_id = tracker.next_id()
    tracker.track(request_id, value, deadline)
    return request_id


def test_ids_count_up_from_one_and_never_repeat():
    tracker = RequestTracker()
    ids = [tracker.next_id() for _ in range(1000)]
    assert ids[0] == 1
    assert ids == sorted(set(ids))
    assert NO_ID not in ids


def test_replies_in_order_settle_their_requests_with_their_values():
    tracker = RequestTracker()
    first, second = sent(tracker, "a"), sent(tracker, "b")
    assert tracker.received(reply(first, n=1))
    assert tracker.take(first) == ("a", reply(first, n=1))
    assert tracker.received(reply(second, n=2))
    assert tracker.take(second) == ("b", reply(second, n=2))
    assert len(tracker) == 0 and tracker.dropped == 0


def test_replies_out_of_order_each_settle_their_own_request():
    tracker = RequestTracker()
    ids = [sent(tracker, f"v{i}") for i in range(3)]
    for request_id in reversed(ids):
        assert tracker.received(reply(request_id))
    assert [value for value, _ in tracker.take_all()] == ["v0", "v1", "v2"]  # request order
    assert tracker.take_all() == []
    assert len(tracker) == 0


def test_a_reply_for_another_pending_id_is_kept_until_asked_for():
    tracker = RequestTracker()
    ahead, now = sent(tracker), sent(tracker)
    assert tracker.received(reply(ahead, which="ahead"))  # came while waiting for `now`
    assert tracker.take(now) is None
    assert tracker.received(reply(now, which="now"))
    assert tracker.take(now)[1].fields == {"which": "now"}
    assert tracker.has_reply(ahead)
    assert tracker.take(ahead)[1].fields == {"which": "ahead"}
    assert not tracker.has_reply(ahead) and tracker.take(ahead) is None


def test_a_late_reply_after_expiry_is_dropped_and_counted():
    tracker = RequestTracker()
    request_id = sent(tracker, "future", deadline=10.0)
    assert tracker.expire(9.999) == []
    assert tracker.expire(10.0) == [(request_id, "future")]
    assert not tracker.received(reply(request_id))
    assert tracker.take(request_id) is None
    assert tracker.dropped == 1 and len(tracker) == 0


def test_an_answered_request_does_not_expire_before_it_is_taken():
    tracker = RequestTracker()
    request_id = sent(tracker, deadline=5.0)
    assert tracker.received(reply(request_id))
    assert tracker.expire(100.0) == []
    assert tracker.next_deadline() is None
    assert tracker.take(request_id) is not None


def test_forget_drops_the_reply_to_come_and_the_one_held():
    tracker = RequestTracker()
    to_come, held = sent(tracker, deadline=5.0), sent(tracker)
    assert tracker.received(reply(held))
    tracker.forget(to_come)
    tracker.forget(held)
    assert tracker.dropped == 1  # the held one
    assert not tracker.received(reply(to_come))
    assert tracker.dropped == 2
    assert tracker.take_all() == [] and len(tracker) == 0
    assert tracker.next_deadline() is None  # a forgotten request's deadline is no deadline
    assert tracker.expire(10.0) == []
    tracker.forget(12345)  # never sent: nothing to do


def test_expiry_goes_by_deadline_not_by_sending_order():
    tracker = RequestTracker()
    late = sent(tracker, "late", deadline=30.0)
    soon = sent(tracker, "soon", deadline=10.0)
    middle = sent(tracker, "middle", deadline=20.0)
    untimed = sent(tracker, "untimed")
    assert tracker.next_deadline() == 10.0
    assert tracker.expire(25.0) == [(soon, "soon"), (middle, "middle")]
    assert tracker.next_deadline() == 30.0
    assert tracker.received(reply(late))
    assert tracker.next_deadline() is None  # the untimed request has no deadline
    assert tracker.expire(1e9) == []
    assert tracker.received(reply(untimed))
    assert [value for value, _ in tracker.take_all()] == ["late", "untimed"]


def test_next_deadline_skips_requests_that_were_answered():
    tracker = RequestTracker()
    first = sent(tracker, deadline=1.0)
    sent(tracker, deadline=2.0)
    tracker.received(reply(first))
    assert tracker.next_deadline() == 2.0
    assert RequestTracker().next_deadline() is None


def test_a_duplicate_reply_is_dropped_and_the_first_kept():
    tracker = RequestTracker()
    request_id = sent(tracker)
    assert tracker.received(reply(request_id, copy=1))
    assert not tracker.received(reply(request_id, copy=2))  # while the first is held
    assert tracker.take(request_id)[1].fields == {"copy": 1}
    assert not tracker.received(reply(request_id, copy=3))  # after it was taken
    assert tracker.dropped == 2


def test_replies_to_ids_never_sent_are_dropped():
    tracker = RequestTracker()
    sent(tracker)
    assert not tracker.received(reply(NO_ID))  # an error reply to an unreadable request
    assert not tracker.received(reply(99))
    assert tracker.dropped == 2 and len(tracker) == 1


def test_tracking_an_id_already_in_flight_is_refused():
    tracker = RequestTracker()
    request_id = sent(tracker)
    with pytest.raises(ValueError, match="already in flight"):
        tracker.track(request_id, None)
    tracker.received(reply(request_id))
    with pytest.raises(ValueError, match="already in flight"):
        tracker.track(request_id, None)


def test_a_forgotten_id_tracked_again_keeps_only_its_new_deadline():
    tracker = RequestTracker()
    request_id = sent(tracker, "old", deadline=1.0)
    tracker.forget(request_id)
    tracker.track(request_id, "new", deadline=5.0)
    assert tracker.next_deadline() == 5.0
    assert tracker.expire(2.0) == []
    assert tracker.expire(5.0) == [(request_id, "new")]


def test_abandon_gives_back_every_value_in_request_order_and_drops_what_follows():
    tracker = RequestTracker()
    ids = [sent(tracker, f"v{i}", deadline=float(i)) for i in range(4)]
    tracker.received(reply(ids[2]))
    assert tracker.abandon() == ["v0", "v1", "v2", "v3"]
    assert len(tracker) == 0 and tracker.next_deadline() is None
    assert not tracker.received(reply(ids[0]))
    assert tracker.abandon() == []


def test_many_answered_requests_do_not_grow_the_deadline_heap():
    """A reply costs no heap work, so the heap keeps stale entries until it is
    compacted; a long run of answered requests must not grow it without bound."""
    tracker = RequestTracker()
    waiting = sent(tracker, "waiting", deadline=1e6)
    for i in range(10_000):
        request_id = sent(tracker, deadline=100.0 + i)
        assert tracker.received(reply(request_id))
        assert tracker.take(request_id) is not None
    assert len(tracker._deadlines) < 200
    assert tracker.next_deadline() == 1e6
    assert tracker.expire(1e6) == [(waiting, "waiting")]
