"""`python -m workers --index N --endpoint ipc://...`: one partition worker process."""

import argparse
import ctypes
import os
import signal

from shm.allocator import keep_freed_memory
from workers.replicas import ReplicaSettings
from workers.worker import Worker

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Get SIGTERM when the supervisor dies, even by SIGKILL: an orphaned worker
    would hold its partitions' locks against the next supervisor's workers.
    SIGTERM (not SIGKILL) so the worker still flushes and closes its logs."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser(prog="ringlog worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--endpoint", required=True, help="the supervisor's worker socket")
    parser.add_argument("--retention-check-ms", type=int, default=300_000)
    parser.add_argument("--door-host", default="127.0.0.1",
                        help="where the client door binds (the front end's host)")
    parser.add_argument("--door-port", type=int, default=0,
                        help="the client door's port; 0: one the kernel picks")
    parser.add_argument("--replica-id", type=int, default=-1,
                        help="this broker's id in a cluster; -1: a single node, no replication")
    parser.add_argument("--replication-host", default="127.0.0.1",
                        help="where the replication ROUTER binds (replication.listener's host)")
    parser.add_argument("--replication-port", type=int, default=0)
    parser.add_argument("--replica-lag-time-max-ms", type=int, default=30_000)
    parser.add_argument("--replica-fetch-wait-max-ms", type=int, default=500)
    parser.add_argument("--replica-fetch-max-bytes", type=int, default=1 << 20)
    args = parser.parse_args()
    die_with_parent()
    keep_freed_memory()  # every produce arrives as a fresh ZeroMQ message
    try:
        from setproctitle import setproctitle
    except ImportError:  # optional: names the process for ps and top
        pass
    else:
        setproctitle(f"ringlog: worker {args.index}")
    replication = None if args.replica_id < 0 else ReplicaSettings(
        args.replica_id, args.replica_lag_time_max_ms, args.replica_fetch_wait_max_ms,
        args.replica_fetch_max_bytes)
    Worker(args.index, args.endpoint, args.retention_check_ms, args.door_host,
           args.door_port, replication, args.replication_host, args.replication_port).run()


if __name__ == "__main__":
    main()
