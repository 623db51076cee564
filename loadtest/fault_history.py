"""The record of a fault run, as Jepsen keeps it: every write invoked, then
completed as ok, fail or info, with the nemesis's faults in between.

    history = History(journal=Path("run.jsonl"))      # journal: optional
    op = history.invoke("w-17", process="producer-0", partition=0)
    history.ok(op, partition=0, offset=41)            # acknowledged at 0/41
    history.complete_with_error(op, "REQUEST_TIMED_OUT")   # or: info, maybe written
    history.nemesis_start("cut", "127.0.0.11 x 127.0.0.12")
    history.nemesis_stop("cut")

Why the three outcomes: a checker may only call a write lost if it was
acknowledged (`ok`), and may only call a visible write a phantom if the broker
said, before appending, that it would not append it (`fail`). Anything else
(a timeout, a lost connection, NOT_ENOUGH_REPLICAS_AFTER_APPEND, a reply that
never came) is `info`: the write may or may not be in the log, and ZeroMQ may
even deliver the request after a partition heals. An invocation never
completed when the run ends counts as `info` too.

Which broker errors are definite (`DEFINITE_ERRORS`, plus every `INVALID_*`):
the ones a broker returns before its append. NOT_LEADER_OR_FOLLOWER is not
among them: an acks=all produce parked after its append answers it when the
leader loses leadership (../shared/notes/replication.md, rule 9), and the
record may survive on the new leader, so treating it as definite would report
phantoms that are not. Record the outcome of the whole operation, client
retries included: a definite error after an earlier attempt timed out is
`info`.

The journal, when given, gets each entry as one JSON line the moment it is
recorded (flushed, not fsync'd), so a run that dies still leaves its record;
`dump` and `load` write and read the same format. Entries carry the
recorder's monotonic time, comparable within one run only.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Literal

OpType = Literal["invoke", "ok", "fail", "info"]
NemesisType = Literal["start", "stop"]

DEFINITE_ERRORS = frozenset({
    "NOT_ENOUGH_REPLICAS",         # the ISR was below min.insync.replicas: nothing appended
    "LEADER_NOT_AVAILABLE",        # no leader to append
    "UNKNOWN_TOPIC_OR_PARTITION",  # no such partition here
    "CORRUPT_MESSAGE",             # the batch failed validation
    "MESSAGE_TOO_LARGE",           # the batch failed validation
})


def is_definite(error: str) -> bool:
    """Whether a broker error proves that nothing was appended."""
    return error in DEFINITE_ERRORS or error.startswith("INVALID_")


@dataclass(frozen=True)
class Operation:
    """One write's invocation or completion; `id` ties the two together.

    `partition` and `offset` on an `ok` are what the broker acknowledged; on
    an invocation, `partition` is where the producer aimed (None when the
    partitioner chooses). `error` is the broker's error name or a short
    description (e.g. "timeout") on `fail` and `info`.
    """

    index: int
    id: int
    type: OpType
    process: str
    value: str
    time: float
    partition: int | None = None
    offset: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class NemesisEvent:
    """A fault beginning (`start`) or ending (`stop`), e.g. ("cut", "a x b")."""

    index: int
    type: NemesisType
    name: str
    time: float
    detail: str = ""


Entry = Operation | NemesisEvent


def entry_to_json(entry: Entry) -> str:
    kind = "op" if isinstance(entry, Operation) else "nemesis"
    return json.dumps({"kind": kind, **asdict(entry)}, separators=(",", ":"))


def entry_from_json(line: str) -> Entry:
    fields = json.loads(line)
    kind = fields.pop("kind")
    if kind == "op":
        return Operation(**fields)
    if kind == "nemesis":
        return NemesisEvent(**fields)
    raise ValueError(f"not a history entry: {line!r}")


class History:
    """An append-only, thread-safe list of entries in the order they happened.

    Producer threads and the nemesis record into one History; a lock orders
    the entries and numbers them (`index`), so the record is one total order
    of what each thread observed.
    """

    def __init__(self, journal: Path | None = None, entries: Iterable[Entry] = ()):
        self._lock = threading.Lock()
        self._entries: list[Entry] = list(entries)
        self._invocations: dict[int, Operation] = {
            e.id: e for e in self._entries if isinstance(e, Operation) and e.type == "invoke"}
        self._completed: set[int] = {
            e.id for e in self._entries if isinstance(e, Operation) and e.type != "invoke"}
        self._next_id = max(self._invocations, default=-1) + 1
        self._journal: IO[str] | None = None
        if journal is not None:
            self._journal = open(journal, "a", encoding="utf-8")  # noqa: SIM115 - close()

    # --- recording ---------------------------------------------------------------------

    def invoke(self, value: str, *, process: str | None = None,
               partition: int | None = None) -> Operation:
        """Record a write about to be sent; pass the result to ok/fail/info."""
        process = process if process is not None else threading.current_thread().name
        with self._lock:
            op = Operation(len(self._entries), self._next_id, "invoke", process, value,
                           time.monotonic(), partition)
            self._next_id += 1
            self._invocations[op.id] = op
            self._append(op)
        return op

    def ok(self, invocation: Operation, *, partition: int, offset: int) -> Operation:
        """The broker acknowledged the write at `partition`/`offset`."""
        return self._complete(invocation, "ok", partition, offset, None)

    def fail(self, invocation: Operation, error: str) -> Operation:
        """The write definitely did not happen (the broker refused before appending)."""
        return self._complete(invocation, "fail", invocation.partition, None, error)

    def info(self, invocation: Operation, error: str) -> Operation:
        """The write's outcome is unknown: it may or may not be in the log."""
        return self._complete(invocation, "info", invocation.partition, None, error)

    def complete_with_error(self, invocation: Operation, error: str) -> Operation:
        """`fail` for a definite broker error (see is_definite), `info` for any other."""
        if is_definite(error):
            return self.fail(invocation, error)
        return self.info(invocation, error)

    def nemesis_start(self, name: str, detail: str = "") -> NemesisEvent:
        return self._nemesis("start", name, detail)

    def nemesis_stop(self, name: str, detail: str = "") -> NemesisEvent:
        return self._nemesis("stop", name, detail)

    def _complete(self, invocation: Operation, op_type: OpType, partition: int | None,
                  offset: int | None, error: str | None) -> Operation:
        with self._lock:
            if self._invocations.get(invocation.id) != invocation:
                raise ValueError(f"operation {invocation.id} was not invoked in this history")
            if invocation.id in self._completed:
                raise ValueError(f"operation {invocation.id} ({invocation.value}) "
                                 "is already complete")
            self._completed.add(invocation.id)
            op = Operation(len(self._entries), invocation.id, op_type, invocation.process,
                           invocation.value, time.monotonic(), partition, offset, error)
            self._append(op)
        return op

    def _nemesis(self, event_type: NemesisType, name: str, detail: str) -> NemesisEvent:
        with self._lock:
            event = NemesisEvent(len(self._entries), event_type, name, time.monotonic(), detail)
            self._append(event)
        return event

    def _append(self, entry: Entry) -> None:
        """Under the lock: keep the entry and journal it."""
        self._entries.append(entry)
        if self._journal is not None:
            self._journal.write(entry_to_json(entry) + "\n")
            self._journal.flush()

    # --- reading -----------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """A copy of every entry, in recorded order."""
        with self._lock:
            return list(self._entries)

    def operations(self) -> list[Operation]:
        return [e for e in self.entries() if isinstance(e, Operation)]

    def nemesis_events(self) -> list[NemesisEvent]:
        return [e for e in self.entries() if isinstance(e, NemesisEvent)]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # --- the record --------------------------------------------------------------------

    def dump(self, path: Path) -> None:
        """Write every entry to `path` as JSON lines (replacing the file)."""
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(entry_to_json(e) + "\n" for e in self.entries())

    @classmethod
    def load(cls, path: Path) -> History:
        """A History holding the entries of a dump or a journal, ready to record more.

        A journal's last line torn by a crash (no newline, not JSON) is
        dropped; a bad line anywhere else is an error.
        """
        lines = Path(path).read_text(encoding="utf-8").split("\n")
        torn = lines.pop()  # '' when the file ends with a newline
        entries = [entry_from_json(line) for line in lines if line.strip()]
        if torn.strip():
            with contextlib.suppress(ValueError):  # json's decode error is a ValueError
                entries.append(entry_from_json(torn))
        return cls(entries=entries)

    def close(self) -> None:
        """Close the journal, if any; the entries stay readable."""
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
