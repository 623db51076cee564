"""The fault history: one total order of what every producer thread and the
nemesis recorded, and a JSON-lines record that reads back as it was."""

from __future__ import annotations

import threading

import pytest

from loadtest.fault_history import History, NemesisEvent, Operation, is_definite

THREADS = 8
WRITES = 200


def produce(history: History, process: str, start: threading.Barrier) -> None:
    start.wait()
    for n in range(WRITES):
        op = history.invoke(f"{process}-w-{n}", process=process, partition=n % 3)
        if n % 10 == 9:
            history.complete_with_error(op, "REQUEST_TIMED_OUT")
        else:
            history.ok(op, partition=n % 3, offset=n)


def test_threads_recording_at_once_get_one_gapless_total_order():
    history = History()
    start = threading.Barrier(THREADS)
    threads = [threading.Thread(target=produce, args=(history, f"p{i}", start))
               for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    entries = history.entries()
    assert len(entries) == len(history) == THREADS * WRITES * 2
    assert [e.index for e in entries] == list(range(len(entries)))
    ops = history.operations()
    invocations = [op for op in ops if op.type == "invoke"]
    assert len({op.id for op in invocations}) == THREADS * WRITES  # ids unique
    by_id = {op.id: op for op in invocations}
    for op in ops:
        if op.type != "invoke":
            assert op.index > by_id[op.id].index  # completed after its invocation
            assert op.value == by_id[op.id].value and op.process == by_id[op.id].process
    for process in (f"p{i}" for i in range(THREADS)):
        mine = [op.value for op in invocations if op.process == process]
        assert mine == [f"{process}-w-{n}" for n in range(WRITES)]  # each thread's order
    assert sum(op.type == "info" for op in ops) == THREADS * WRITES // 10


def test_a_completion_carries_the_acknowledged_place_and_the_invocations_identity():
    history = History()
    op = history.invoke("w-0", process="p0")
    done = history.ok(op, partition=2, offset=41)
    assert (done.type, done.id, done.value, done.process) == ("ok", op.id, "w-0", "p0")
    assert (done.partition, done.offset, done.error) == (2, 41, None)
    assert op.partition is None  # the partitioner chose
    assert done.time >= op.time


def test_an_operation_completes_once():
    history = History()
    op = history.invoke("w-0", process="p0", partition=0)
    history.ok(op, partition=0, offset=0)
    with pytest.raises(ValueError, match="already complete"):
        history.info(op, "timeout")
    with pytest.raises(ValueError, match="not invoked"):
        History().ok(op, partition=0, offset=0)


@pytest.mark.parametrize("error", ["NOT_ENOUGH_REPLICAS", "LEADER_NOT_AVAILABLE",
                                   "UNKNOWN_TOPIC_OR_PARTITION", "INVALID_REQUIRED_ACKS",
                                   "INVALID_RECORD"])
def test_errors_returned_before_the_append_are_definite_failures(error: str):
    history = History()
    assert is_definite(error)
    assert history.complete_with_error(history.invoke("w", process="p"), error).type == "fail"


@pytest.mark.parametrize("error", ["NOT_ENOUGH_REPLICAS_AFTER_APPEND", "REQUEST_TIMED_OUT",
                                   "NOT_LEADER_OR_FOLLOWER", "NETWORK_EXCEPTION", "timeout",
                                   "connection lost"])
def test_errors_that_may_follow_an_append_leave_the_outcome_unknown(error: str):
    history = History()
    assert not is_definite(error)
    assert history.complete_with_error(history.invoke("w", process="p"), error).type == "info"


def recorded_run() -> History:
    history = History()
    history.ok(history.invoke("w-0", process="p0", partition=0), partition=0, offset=0)
    history.nemesis_start("cut", "127.0.0.11 x 127.0.0.12")
    history.fail(history.invoke("w-1", process="p0", partition=0), "NOT_ENOUGH_REPLICAS")
    history.info(history.invoke("w-2", process="p1"), "timeout")
    history.nemesis_stop("cut")
    history.invoke("w-3", process="p1", partition=1)  # never completed
    return history


def test_a_dump_loads_back_entry_for_entry(tmp_path):
    history = recorded_run()
    history.dump(tmp_path / "run.jsonl")
    loaded = History.load(tmp_path / "run.jsonl")
    assert loaded.entries() == history.entries()
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert len(lines) == len(history)
    assert lines[2].startswith('{"kind":"nemesis","index":2,"type":"start","name":"cut"')
    events = loaded.nemesis_events()
    assert [(e.type, e.name) for e in events] == [("start", "cut"), ("stop", "cut")]
    assert all(isinstance(e, NemesisEvent) for e in events)


def test_a_loaded_history_records_on_with_fresh_ids_and_can_complete_open_invocations(
        tmp_path):
    recorded_run().dump(tmp_path / "run.jsonl")
    loaded = History.load(tmp_path / "run.jsonl")
    open_op = next(op for op in loaded.operations() if op.value == "w-3")
    done = loaded.ok(open_op, partition=1, offset=0)
    later = loaded.invoke("w-4", process="p0")
    assert done.index == 9 and later.index == 10
    assert later.id == 4  # after the four invocations already recorded


def test_the_journal_holds_each_entry_as_it_is_recorded(tmp_path):
    journal = tmp_path / "journal.jsonl"
    with History(journal=journal) as history:
        op = history.invoke("w-0", process="p0", partition=0)
        assert len(journal.read_text().splitlines()) == 1  # flushed at once, not at close
        history.ok(op, partition=0, offset=0)
        history.nemesis_start("kill9", "broker-2")
    assert History.load(journal).entries() == history.entries()


def test_a_journal_torn_by_a_crash_loads_up_to_its_last_whole_line(tmp_path):
    journal = tmp_path / "journal.jsonl"
    history = recorded_run()
    history.dump(journal)
    whole = journal.read_text()
    journal.write_text(whole + '{"kind":"op","index":9,"id":3,"ty')  # the write in flight
    assert History.load(journal).entries() == history.entries()
    journal.write_text('{"kind":"op","ind\n' + whole)
    with pytest.raises(ValueError):
        History.load(journal)  # damage before the end is not a torn tail


def test_operations_and_events_are_plain_typed_values():
    history = recorded_run()
    assert all(isinstance(e, Operation | NemesisEvent) for e in history)
    assert [op.type for op in history.operations()] == [
        "invoke", "ok", "invoke", "fail", "invoke", "info", "invoke"]
