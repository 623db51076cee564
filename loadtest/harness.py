"""What every benchmark, `ringlog perf` and the integration tests share: one
way to start a real appliance and wait for it, one deadline, one percentile,
and the work directory, progress line and tables of the benchmarks' reports.

Kept to the standard library, psutil and the public client, so that the CLI
can import the percentile from here without pulling in a benchmark."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import psutil

from appliance.client import Admin
from shm.errors import RinglogError

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[1]
VALUE_POOL = 1024  # distinct values cycled through by the producers (built before the clock)

# --- percentiles ----------------------------------------------------------------------------

# What `ringlog perf` prints, as Kafka's kafka-producer-perf-test does.
PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999))
# What the benchmarks' targets (issue #3, W3) name.
TAIL_PERCENTILES = (("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest rank: the ceil(q * n)-th smallest sample (at least the first).

    Always a sample that was measured, never an interpolation between two,
    so p50 <= p99 <= p99.9 <= max holds for any data; q is a fraction, 0 is
    the minimum and 1 the maximum. No samples: 0.0, as `ringlog perf` has
    always printed it (NaN is not JSON); whoever judges a target on it
    checks that there were samples. The rank is taken in exact arithmetic
    (0.07 * 100 is 7.000000000000001 in floats). See docs/performance.md,
    "Percentiles"."""
    if not 0 <= q <= 1:
        raise ValueError(f"q is a fraction from 0 to 1, not {q}: pass 0.99 for p99")
    n = len(sorted_values)
    if not n:
        return 0.0
    rank = max(1, math.ceil(Fraction(str(q)) * n))
    return sorted_values[rank - 1]


def latency_summary(latencies_ms: Iterable[float],
                    percentiles: Sequence[tuple[str, float]] = PERCENTILES) -> dict[str, float]:
    """avg, each named percentile and max of the latencies (all 0.0 for none)."""
    ordered = sorted(latencies_ms)
    summary = {"avg": math.fsum(ordered) / len(ordered) if ordered else 0.0}
    for name, q in percentiles:
        summary[name] = percentile(ordered, q)
    summary["max"] = ordered[-1] if ordered else 0.0
    return summary


# --- deadlines ------------------------------------------------------------------------------


class BenchTimeout(Exception):
    """A workload ran past its --timeout."""


class Deadline:
    """A time bound on one named piece of work; its expiry names the work and
    the option that set it, so a stopped run says what was too slow."""

    def __init__(self, what: str, seconds: float):
        self.what, self.seconds = what, seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return time.monotonic() > self.at

    def timeout(self, detail: str = "") -> BenchTimeout:
        """The error to raise once the deadline has passed."""
        why = f" ({detail})" if detail else ""
        return BenchTimeout(f"{self.what} did not finish within {self.seconds:.0f} s "
                            f"(--timeout){why}; aborting")

    def check(self, detail: str = "") -> None:
        if self.expired:
            raise self.timeout(detail)


# What ends a benchmark early: a workload past its time, the appliance misbehaving.
RUN_FAILURES = (BenchTimeout, RuntimeError, RinglogError)


def stopped(exc: Exception) -> int:
    """Say on one line why a run stopped; main()'s exit status."""
    progress("")
    text = str(exc) if isinstance(exc, BenchTimeout) else f"{type(exc).__name__}: {exc}"
    print(f"error: {text}", file=sys.stderr)
    return 1


# --- the appliance --------------------------------------------------------------------------


class ApplianceFailed(RuntimeError):
    """The appliance exited, or was not serving by its deadline."""


_PORT_PICKS = random.SystemRandom()  # apart from any seed a test gives `random`


def free_port() -> int:
    return free_ports(1)[0]


def _ephemeral_low() -> int:
    """The first port the kernel hands out for connections and bind(0)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> list[int]:
    """`count` different ports, free now, from below the kernel's ephemeral
    range, as an operator's configured ports are: a port from inside it can
    be handed to any outgoing connection between this pick and the listener's
    bind (CI saw a broker's own ZooKeeper connection take one). Each socket is
    held until all are picked, so the ports differ."""
    low, high = 10000, _ephemeral_low()
    sockets: list[socket.socket] = []
    try:
        for _ in range(100 * count):
            if len(sockets) == count:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", _PORT_PICKS.randrange(low, high)))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        if len(sockets) < count:
            raise RuntimeError(f"no {count} free ports between {low} and {high}")
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


_RUNNING: list[Appliance] = []  # started by this process and not yet stopped


class Appliance:
    """`python -m appliance serve` on a free loopback port, its data, control
    blocks and stderr under `directory` (data/, shm/, appliance.log).

    The appliance runs in its own session, so that killing its process group
    takes the workers too, and gets SIGTERM if the thread that started it
    dies, even by SIGKILL (a test's timeout): no run leaves one behind.
    Starting again in the same directory (and `port`) is a restart."""

    def __init__(self, directory: Path, *overrides: str, workers: int = 1,
                 env: dict[str, str] | None = None, port: int | None = None,
                 config_path: Path | None = None, host: str = "127.0.0.1",
                 kafka_port: int | None = None):
        from workers.__main__ import die_with_parent  # here: `ringlog perf` loads no worker

        self.directory = directory
        self.host = host  # a loopback address of its own in cluster tests (127.0.0.11...)
        self.port = port or free_port()
        self.bootstrap = f"{host}:{self.port}"
        if kafka_port is None:  # its Kafka (PLAINTEXT) listener, on a port of its own
            kafka_port = next(p for p in free_ports(2) if p != self.port)
        self.kafka_port = kafka_port
        self.kafka_bootstrap = f"{host}:{self.kafka_port}"
        self.workers = workers
        self.log_dir = directory / "data"
        self.shm_dir = directory / "shm"
        self.stderr_path = directory / "appliance.log"
        args = [sys.executable, "-m", "appliance", "serve",
                "--override",
                f"listeners=tcp://{host}:{self.port},PLAINTEXT://{host}:{self.kafka_port}",
                "--override", f"log.dirs={self.log_dir}",
                "--override", f"num.workers={workers}",
                # Any free port, so that appliances side by side never clash on the
                # default 7094; whoever scrapes it passes its own http.listener.
                "--override", f"http.listener={host}:0",
                *(arg for item in overrides for arg in ("--override", item))]
        if config_path is not None:
            args += ["--config", str(config_path)]
        environment = {**os.environ, "RINGLOG_SHM_DIR": str(self.shm_dir), **(env or {})}
        with open(self.stderr_path, "ab") as stderr:
            self.process = subprocess.Popen(args, cwd=REPO, env=environment,
                                            stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=stderr,
                                            start_new_session=True, preexec_fn=die_with_parent)
        _RUNNING.append(self)

    def stderr(self) -> str:
        """Everything the appliance logged (every start in this directory)."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, lines: int = 20) -> str:
        return "\n".join(self.stderr().splitlines()[-lines:])

    def wait_until_serving(self, timeout_s: float = 30) -> None:
        """Poll the status API until every worker has reported ready."""
        deadline = Deadline("the appliance's start", timeout_s)
        with Admin(self.bootstrap, request_timeout_ms=500) as admin:
            while not deadline.expired:
                if self.process.poll() is not None:
                    raise ApplianceFailed(f"the appliance exited with {self.process.returncode}"
                                          f":\n{self.stderr_tail()}")
                try:
                    status = admin.status()
                except RinglogError:  # not listening yet: the request times out
                    continue
                if len(status.get("workers", ())) >= self.workers:
                    return
                time.sleep(0.05)
        raise ApplianceFailed(f"the appliance was not serving after {timeout_s:.0f} s:\n"
                              + self.stderr_tail())

    def create_topic(self, name: str, deadline: Deadline, partitions: int = 1,
                     poll_s: float = 0.02) -> int:
        """Create a topic and wait until every partition's worker has opened it;
        the describe calls that took. Past the deadline, says how many partitions
        were not serving and why the appliance last said it could not open one."""
        timeout_ms = max(1000, int(deadline.remaining() * 1000))
        with Admin(self.bootstrap, request_timeout_ms=timeout_ms) as admin:
            admin.create_topic(name, partitions)
            polls = 0
            while True:
                polls += 1
                entry = admin.describe_topic(name)
                waiting = partitions - sum(p.get("error") is None for p in entry["partitions"])
                if not waiting:
                    return polls
                if deadline.expired:
                    failed = [line.split(": ", 1)[-1] for line in self.stderr_tail(500).splitlines()
                              if "could not open" in line]
                    why = f"; the appliance says: {failed[-1]}" if failed else ""
                    raise deadline.timeout(f"{waiting:,} of {partitions:,} partitions "
                                           f"not serving{why}")
                time.sleep(poll_s)

    def processes(self) -> list[psutil.Process]:
        """The supervisor and every process under it."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def worker_pids(self) -> list[int]:
        """The live partition workers (an exited, unreaped one is not)."""
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.Error:
            return []
        pids = []
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE and "worker" in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.Error:
                continue  # exited meanwhile
        return pids

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM (the appliance drains), then its exit status; past
        `timeout_s` the whole group is killed and the status is -9."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -signal.SIGKILL
        with contextlib.suppress(ValueError):
            _RUNNING.remove(self)
        return code

    def kill(self) -> None:
        """SIGKILL the appliance's process group and reap the supervisor."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def shared_across_tests(appliance: Appliance) -> Appliance:
    """Take `appliance` off the list kill_leftovers() empties after each test:
    a module's fixture that serves several tests stops it itself."""
    if appliance in _RUNNING:
        _RUNNING.remove(appliance)
    return appliance


def kill_leftovers() -> None:
    """Kill every appliance this process started and did not stop (a test
    that failed half-way), with its whole process group."""
    while _RUNNING:
        appliance = _RUNNING.pop()
        if appliance.process.poll() is None:
            appliance.kill()


def make_values(value_bytes: int, seed: int) -> list[bytes]:
    """VALUE_POOL random values, built before a timed run and cycled through."""
    rng = random.Random(seed)
    return [rng.randbytes(value_bytes) for _ in range(VALUE_POOL)]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class CpuMeter:
    """CPU seconds of this process and of the appliance's processes between start() and stop()."""

    def __init__(self, appliance: Appliance):
        self.appliance = appliance
        self.me = psutil.Process()

    def _snapshot(self) -> tuple[float, dict[int, float]]:
        app = {}
        for p in self.appliance.processes():
            with contextlib.suppress(psutil.Error):
                app[p.pid] = cpu_seconds(p)
        return cpu_seconds(self.me), app

    def start(self) -> None:
        self._before = self._snapshot()

    def stop(self) -> tuple[float, float]:
        own, app = self._snapshot()
        own0, app0 = self._before
        return own - own0, sum(v - app0.get(pid, 0.0) for pid, v in app.items())


# --- work directory and report --------------------------------------------------------------


class NotEnoughSpace(Exception):
    """The work directory's file system cannot hold the benchmark's data."""


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so the work directory is still removed


@contextlib.contextmanager
def work_directory(parent: Path | None, prefix: str, need_bytes: int) -> Iterator[Path]:
    """A temporary directory under `parent` (default ./.bench), removed at the
    end, even on SIGTERM; warns on tmpfs, where fdatasync costs nothing."""
    default = None
    if parent is None:
        parent = default = Path.cwd() / ".bench"
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        fstype = fs_of(workdir)[0]
        if fstype in ("tmpfs", "ramfs"):
            print(f"warning: {workdir} is on {fstype}: fdatasync costs nothing there, "
                  "pass --dir on a disk filesystem", file=sys.stderr)
        free = shutil.disk_usage(workdir).free
        if free < need_bytes:
            raise NotEnoughSpace(f"{workdir} has {free // MiB} MiB free, the bench needs "
                                 f"about {need_bytes // MiB} MiB")
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if default is not None:
            with contextlib.suppress(OSError):  # not empty: another run is using it
                default.rmdir()


def progress(message: str) -> None:
    """One self-overwriting status line, only on a terminal."""
    if sys.stderr.isatty():
        print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)


def table(rows: Iterable[Iterable[str]], header: list[str], text_columns: int = 1) -> str:
    """Columns padded to width: the first `text_columns` left-aligned, numbers right."""
    rows = [list(r) for r in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    lines = []
    for i, row in enumerate([header, *rows]):
        cells = [c.ljust(w) if j < text_columns else c.rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fs_of(path: Path) -> tuple[str, str, str]:
    """(filesystem type, device, mount point) holding `path`, from /proc/self/mounts."""
    real = os.path.realpath(path)
    best, best_len = ("?", "?", "/"), -1
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                device, mount, fstype = line.split()[:3]
                mount = mount.replace("\\040", " ")
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= best_len:
                    best, best_len = (fstype, device, mount), len(mount)
    except OSError:
        pass
    return best


def machine(workdir: Path) -> dict:
    """The machine a run's figures belong to, for its --json output."""
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "kernel": platform.release(), "fs": fs_of(workdir)}
