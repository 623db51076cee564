"""The comparison's table per run (every workload, every peer, Ringlog/peer per
row), the runs side by side with their spread, the notes under them (client
and ack of each peer) and the JSON record."""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import asdict
from pathlib import Path

from loadtest.harness import fs_of, machine, table
from loadtest.peers.peer import Peer
from loadtest.peers.workload import WHAT, WORKLOADS, Measurement, Plan, Run

RINGLOG = "ringlog"
LATENCY_KEYS = ("p50", "p99", "p99.9")  # the ones Ringlog/peer compares
W3_FIGURES = (*LATENCY_KEYS, "max")  # the ones shown
W1_NOTE = ("W1: Ringlog twice, `send` with one Producer.send() per record (a Kafka producer "
           "loop) and `send_many` (the bulk call); a peer's W1 ratio is given against each.")


def ratio(ringlog: Measurement | None, peer: Measurement) -> str:
    """Ringlog's figure over the peer's: records/s, or for W3 latency at p50/p99/p99.9."""
    if ringlog is None or peer.peer == RINGLOG or ringlog.error or peer.error:
        return "-"
    if peer.workload == "W3":
        mine, theirs = ringlog.latency_ms or {}, peer.latency_ms or {}
        parts = []
        for k in LATENCY_KEYS:
            a, b = mine.get(k), theirs.get(k)
            parts.append(f"{a / b:.2f}" if a is not None and b else "-")
        return " / ".join(parts)
    return f"{ringlog.rate / peer.rate:.2f}" if peer.rate else "-"


def ratio_cell(ringlog: list[Measurement], peer: Measurement) -> str:
    """The Ringlog/peer cell of a peer's row: one ratio per Ringlog row of the
    workload, each named by its call when there are several (W1: send, send_many)."""
    if not ringlog or peer.peer == RINGLOG or peer.error:
        return "-"
    if len(ringlog) == 1 and not ringlog[0].call:
        return ratio(ringlog[0], peer)
    return " / ".join(f"{r.call or r.label} {ratio(r, peer)}" for r in ringlog)


def _latency_cell(m: Measurement) -> str:
    lat = m.latency_ms
    if not lat:
        return "-"
    return " / ".join(f"{lat[k]:.2f}" if k in lat else "-" for k in W3_FIGURES)


def _ringlog_rows(measurements: list[Measurement]) -> dict[str, list[Measurement]]:
    out: dict[str, list[Measurement]] = {}
    for m in measurements:
        if m.peer == RINGLOG:
            out.setdefault(m.workload, []).append(m)
    return out


def rows(measurements: list[Measurement]) -> list[list[str]]:
    """One row per measurement, grouped by workload in W1..W4 order, peers in run order."""
    ringlog = _ringlog_rows(measurements)
    out = []
    for workload in WORKLOADS:
        first = True
        for m in (m for m in measurements if m.workload == workload):
            failed = m.error is not None
            out.append([
                workload if first else "",
                WHAT[workload] if first else "",
                m.label,
                f"{m.records:,}" if not failed else "-",
                f"{m.seconds:.2f}" if not failed else "-",
                f"{m.rate:,.0f}" if not failed else "FAILED",
                f"{m.mbps:,.1f}" if not failed else "-",
                _latency_cell(m),
                ratio_cell(ringlog.get(workload, []), m),
            ])
            first = False
    return out


def comparison_table(measurements: list[Measurement]) -> str:
    return table(rows(measurements),
                 ["", "workload", "peer", "records", "seconds", "records/s", "MB/s",
                  "e2e ms p50 / p99 / p99.9 / max", "Ringlog/peer"], text_columns=3)


# --- runs side by side ---------------------------------------------------------------------


def figure(m: Measurement | None, key: str) -> float | None:
    """One figure of a measurement: records/s, or a W3 latency in ms; None if it failed."""
    if m is None or m.error:
        return None
    if key == "records/s":
        return m.rate
    return (m.latency_ms or {}).get(key)


def spread(values: list[float | None]) -> float | None:
    """(max - min) / median of the runs that have the figure; None below two."""
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    median = statistics.median(present)
    return (max(present) - min(present)) / median if median else None


def side_by_side(runs: list[Run]) -> list[dict]:
    """Per workload, peer (and call) and figure: its value in each run and the spread.
    Rows in the first run's order; W3 gives its latencies, the others records/s."""
    keys: list[tuple[str, str, str]] = []
    for run in runs:
        for m in run.measurements:
            if (m.workload, m.peer, m.call) not in keys:
                keys.append((m.workload, m.peer, m.call))
    keys.sort(key=lambda k: WORKLOADS.index(k[0]))  # stable: peers keep their order
    out = []
    for workload, peer, call in keys:
        found = [next((m for m in run.measurements
                       if (m.workload, m.peer, m.call) == (workload, peer, call)), None)
                 for run in runs]
        for key in W3_FIGURES if workload == "W3" else ("records/s",):
            values = [figure(m, key) for m in found]
            out.append({"workload": workload, "peer": peer, "call": call, "figure": key,
                        "values": values, "spread": spread(values)})
    return out


def side_by_side_table(runs: list[Run]) -> str:
    body = []
    last: tuple[str, str, str] | None = None
    for row in side_by_side(runs):
        workload, peer, call = row["workload"], row["peer"], row["call"]
        rate = row["figure"] == "records/s"
        label = Measurement(workload, peer, call=call).label
        body.append([
            workload if last is None or last[0] != workload else "",
            label if last != (workload, peer, call) else "",
            row["figure"] if rate else f"{row['figure']} ms",
            *("-" if v is None else f"{v:,.0f}" if rate else f"{v:.2f}"
              for v in row["values"]),
            "-" if row["spread"] is None else f"{row['spread']:.1%}",
        ])
        last = (workload, peer, call)
    header = ["", "peer", "figure", *(f"run {i}" for i in range(1, len(runs) + 1)), "spread"]
    return table(body, header, text_columns=3)


# --- the report --------------------------------------------------------------------------


def heading(plan: Plan, workdir: Path) -> str:
    """What every run shares: printed once, before the first run."""
    fstype, device, mount = fs_of(workdir)
    runs = f"; {plan.runs} runs back to back" if plan.runs > 1 else ""
    return "\n".join([
        "Ringlog against peer brokers (issue #4): one producer, one consumer, one "
        "partition/stream, on loopback",
        f"  python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Linux {platform.release()}",
        f"  data in {workdir} on {fstype} ({device} at {mount})",
        f"  W1/W2/W4 {plan.records:,} records each; W3 {plan.rate:,} records/s for "
        f"{plan.seconds:g} s; MB/s = record values only, 10^6 bytes{runs}",
    ])


def run_report(plan: Plan, run: Run, number: int) -> str:
    """One run's table and its failures, printed as the run ends."""
    out = [f"Run {number} of {plan.runs}: load average {run.load[0]:.2f} at start, "
           f"{run.load[1]:.2f} at end; {run.seconds:.1f} s", "",
           comparison_table(run.measurements)]
    errors = [m for m in run.measurements if m.error]
    if errors:
        out += ["", "Failed:"]
        out += [f"  {m.workload} on {m.label}: {m.error}" for m in errors]
    return "\n".join(out)


def closing(plan: Plan, peers: list[Peer], runs: list[Run], elapsed: float) -> str:
    """After the last run: the runs side by side (if more than one) and the notes."""
    out = []
    if len(runs) > 1:
        out += ["Runs side by side: records/s (W3: end-to-end latency in ms); spread = "
                "(max - min) / median of the runs", "", side_by_side_table(runs), ""]
    out += [
        "Ringlog/peer: Ringlog's records/s over the peer's (above 1: Ringlog faster); for W3 "
        "Ringlog's latency over the peer's at p50 / p99 / p99.9 (below 1: Ringlog faster).",
        *([W1_NOTE] if any(m.call for r in runs for m in r.measurements) else []),
        "W3: the producer stamps time.time_ns() in the value; a consumer in another process "
        "takes receive time minus that stamp.",
        "",
        "Peers (server, client, what an acknowledged produce means):",
    ]
    for peer in peers:
        out.append(f"  {peer.name}: {peer.version}; {peer.client or '-'}")
        out.append(f"    ack: {peer.ack}")
    out += ["", f"total time {elapsed:.1f} s"]
    return "\n".join(out)


def write_json(path: Path, plan: Plan, peers: list[Peer], runs: list[Run],
               workdir: Path) -> None:
    """Every run's figures, the runs side by side, the plan, the machine and the peers."""

    def results(run: Run) -> list[dict]:
        ringlog = _ringlog_rows(run.measurements)
        return [{**asdict(m), "label": m.label, "records_per_s": m.rate, "mb_per_s": m.mbps,
                 "ringlog_over_peer": ratio_cell(ringlog.get(m.workload, []), m)}
                for m in run.measurements]

    path.write_text(json.dumps({
        "plan": asdict(plan),
        "machine": machine(workdir),
        "peers": [{"name": p.name, "version": p.version, "client": p.client, "ack": p.ack}
                  for p in peers],
        "runs": [{"run": i, "load_average": {"start": r.load[0], "end": r.load[1]},
                  "seconds": r.seconds, "results": results(r)}
                 for i, r in enumerate(runs, 1)],
        "side_by_side": side_by_side(runs),
    }, indent=2) + "\n")
