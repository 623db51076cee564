"""The comparison's one table (every workload, every peer, Ringlog/peer per
row), the notes under it (client and ack of each peer) and the JSON record."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path

from loadtest.harness import fs_of, machine, table
from loadtest.peers.peer import Peer
from loadtest.peers.workload import WHAT, WORKLOADS, Measurement, Plan

RINGLOG = "ringlog"
LATENCY_KEYS = ("p50", "p99", "p99.9")


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


def _latency_cell(m: Measurement) -> str:
    lat = m.latency_ms
    if not lat:
        return "-"
    return " / ".join(f"{lat[k]:.2f}" for k in LATENCY_KEYS)


def rows(measurements: list[Measurement]) -> list[list[str]]:
    """One row per measurement, grouped by workload in W1..W4 order, peers in run order."""
    ringlog = {m.workload: m for m in measurements if m.peer == RINGLOG}
    out = []
    for workload in WORKLOADS:
        first = True
        for m in (m for m in measurements if m.workload == workload):
            failed = m.error is not None
            out.append([
                workload if first else "",
                WHAT[workload] if first else "",
                m.peer,
                f"{m.records:,}" if not failed else "-",
                f"{m.seconds:.2f}" if not failed else "-",
                f"{m.rate:,.0f}" if not failed else "FAILED",
                f"{m.mbps:,.1f}" if not failed else "-",
                _latency_cell(m),
                ratio(ringlog.get(workload), m),
            ])
            first = False
    return out


def comparison_table(measurements: list[Measurement]) -> str:
    return table(rows(measurements),
                 ["", "workload", "peer", "records", "seconds", "records/s", "MB/s",
                  "e2e ms p50 / p99 / p99.9", "Ringlog/peer"], text_columns=3)


def report(plan: Plan, peers: list[Peer], measurements: list[Measurement], workdir: Path,
           load: tuple[float, float], elapsed: float) -> str:
    fstype, device, mount = fs_of(workdir)
    out = [
        "Ringlog against peer brokers (issue #4): one producer, one consumer, one "
        "partition/stream, on loopback",
        f"  python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Linux {platform.release()}; load average {load[0]:.2f} at start, {load[1]:.2f} at end",
        f"  data in {workdir} on {fstype} ({device} at {mount})",
        f"  W1/W2/W4 {plan.records:,} records each; W3 {plan.rate:,} records/s for "
        f"{plan.seconds:g} s; MB/s = record values only, 10^6 bytes",
        "",
        comparison_table(measurements),
        "",
        "Ringlog/peer: Ringlog's records/s over the peer's (above 1: Ringlog faster); for W3 "
        "Ringlog's latency over the peer's at p50 / p99 / p99.9 (below 1: Ringlog faster).",
        "W3: the producer stamps time.time_ns() in the value; a consumer in another process "
        "takes receive time minus that stamp.",
        "",
        "Peers (server, client, what an acknowledged produce means):",
    ]
    for peer in peers:
        out.append(f"  {peer.name}: {peer.version}; {peer.client or '-'}")
        out.append(f"    ack: {peer.ack}")
    errors = [m for m in measurements if m.error]
    if errors:
        out += ["", "Failed:"]
        out += [f"  {m.workload} on {m.peer}: {m.error}" for m in errors]
    out += ["", f"total time {elapsed:.1f} s"]
    return "\n".join(out)


def write_json(path: Path, plan: Plan, peers: list[Peer], measurements: list[Measurement],
               workdir: Path, load: tuple[float, float]) -> None:
    ringlog = {m.workload: m for m in measurements if m.peer == RINGLOG}
    path.write_text(json.dumps({
        "plan": asdict(plan),
        "machine": {**machine(workdir), "load_average": {"start": load[0], "end": load[1]}},
        "peers": [{"name": p.name, "version": p.version, "client": p.client, "ack": p.ack}
                  for p in peers],
        "results": [{**asdict(m), "records_per_s": m.rate, "mb_per_s": m.mbps,
                     "ringlog_over_peer": ratio(ringlog.get(m.workload), m)}
                    for m in measurements],
    }, indent=2) + "\n")
