"""How the `cnnspec train` process uses a CPU: how torch's OpenMP threads wait, and what the C allocator
does with freed memory. Both are process-wide, so the command sets them, not the Python API (whose
caller's process is not cnnspec's to change); docs/benchmarks.md, "CPU defaults", has the figures.

**Waiting threads (OMP_WAIT_POLICY).** OpenMP reads it once, when torch loads. Spinning (torch's default:
a thread out of work spins a while before it sleeps) is the fastest way to wait when each of torch's
threads has a core to itself, and by far the slowest when other processes use the cores: the spinning
thread holds the core that the thread it waits for needs. On the 2-core development machine, sleeping
(PASSIVE) trained the digits spec 13.6× faster under a load of 6.7, and 1.1–1.8× slower on idle cores.
So the command sets PASSIVE before any command runs (`prepare`), and `train` (and `bench`, which
times torch against onnxruntime's spinning threads) looks again before it imports torch
(`tune_for_compute`): when the other processes left torch's threads a core each over the command's
first ~0.1 s (CPU time from /proc/stat's lines of the CPUs it may use, less this process's own), it
leaves the policy unset, torch's default. Load that starts later in a run meets spinning threads, as
in a plain PyTorch script. A user's own OMP_WAIT_POLICY (or GOMP_SPINCOUNT) is always kept; without
/proc/stat (macOS, Windows) it stays PASSIVE.

**Freed memory (glibc's mallopt).** glibc gives freed memory back to the system: a block above its mmap
threshold is unmapped when freed, and the heap's free top is trimmed beyond the trim threshold. Both
thresholds follow the sizes it has seen freed, but a training step's mix of sizes and threads keeps
some activation-sized blocks going back, and they return as fresh pages, each faulting when first
written. `train` keeps blocks up to 32 MiB (glibc's largest threshold) in the heap and never trims it
(M_MMAP_THRESHOLD, M_TRIM_THRESHOLD; setting either alone turns the other's adjustment off, and was
slower than neither): the process keeps its peak memory until it ends, as a training run does anyway.
Not glibc (macOS, musl): nothing is changed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

VARIABLE = "OMP_WAIT_POLICY"
# The look at the other processes' CPU use lasts at least this long: about what `cnnspec train` takes to
# reach the look anyway (0.11 s on the development machine), so it rarely waits. The kernel counts CPU
# time in ticks of 10 ms: over 0.1 s, a tick or two either way is 0.1–0.2 of a core.
WINDOW_SECONDS = 0.1
# Spinning needs a core per torch thread: other processes may use at most this much of the rest.
SPARE_CORES = 0.3
# mallopt's parameters (glibc's malloc.h) and the largest mmap threshold it accepts on 64 bits.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
TRIM_THRESHOLD_NEVER = 2**31 - 1  # an int: mallopt's value is a C int


@dataclass(frozen=True)
class CpuSample:
    busy: int  # clock ticks all CPUs spent not idle, since boot
    own: float  # CPU seconds this process has used
    at: float  # time.monotonic()


@dataclass
class _State:
    user_set: bool = True  # until `prepare` has looked
    start: CpuSample | None = None
    note: str | None = None  # what tune_for_compute did, for the run's log


_state = _State()


def prepare(own_process: bool) -> None:
    """At the command's start: set OMP_WAIT_POLICY=PASSIVE unless it is set (what every command but
    `train` keeps). `own_process`: the process is the command's alone (the console script, not a caller
    that goes on after it): then remember whether the user set the policy and take the first CPU
    sample, for `tune_for_compute`, which changes nothing otherwise."""
    _state.user_set = VARIABLE in os.environ or "GOMP_SPINCOUNT" in os.environ  # libgomp's own spin setting wins
    _state.start = take_sample() if own_process else None
    _state.note = None
    os.environ.setdefault(VARIABLE, "PASSIVE")


def tune_for_compute(processes: int = 1) -> None:
    """Before a command whose time is torch's compute (`train`, `bench`) imports torch: keep freed memory
    for reuse, and let torch's threads spin (torch's default) when the cores are free for them. Several
    training processes (`--nproc`, torchrun's WORLD_SIZE) share the cores: they keep PASSIVE."""
    if _state.start is None:
        return  # not the command's own process (prepare), or no /proc/stat
    wait = _choose_wait(processes)
    kept = keep_freed_memory()
    if wait is not None:  # the line says what was chosen; a user's own OMP_WAIT_POLICY gets none
        _state.note = f"{wait}; freed memory kept for reuse" if kept else wait


def _choose_wait(processes: int) -> str | None:
    """Leave OMP_WAIT_POLICY unset (spinning) when the cores are free; what it chose, or None."""
    start = _state.start
    if _state.user_set or start is None or "torch" in sys.modules:
        return None  # the user's setting, no /proc/stat, or torch loaded already (the policy is read by then)
    if processes > 1 or _torchrun_processes() > 1:
        return None
    time.sleep(max(0.0, start.at + WINDOW_SECONDS - time.monotonic()))
    end = take_sample()
    if end is None:
        return None
    cores, threads = usable_cores(), torch_threads()
    others = other_cores(start, end, os.sysconf("SC_CLK_TCK"))
    used = f"other processes used {others:.1f} of the {cores:g} cores"
    if spins(others, threads, cores):
        os.environ.pop(VARIABLE, None)
        return f"cpu threads: {threads}, spinning while they wait ({used}; {VARIABLE}=PASSIVE makes them sleep)"
    return f"cpu threads: {threads}, sleeping while they wait ({VARIABLE}=PASSIVE: {used})"


def _torchrun_processes() -> int:
    """WORLD_SIZE as training reads it (`training.distributed.from_env`: with RANK and LOCAL_RANK)."""
    if not all(name in os.environ for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE")):
        return 1
    try:
        return int(os.environ["WORLD_SIZE"])
    except ValueError:
        return 1  # training refuses it, with its own message


def spins(others: float, threads: int, cores: float) -> bool:
    """Whether torch's threads should spin: each has a core the other processes leave free."""
    return others + threads <= cores + SPARE_CORES


def take_note() -> str | None:
    """What `tune_for_compute` chose, for the log of the run it was chosen for (one line, given once)."""
    note, _state.note = _state.note, None
    return note


def keep_freed_memory() -> bool:
    """glibc: keep freed blocks up to 32 MiB in the heap, and the heap's freed top (True when set)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # no mallopt: not glibc or musl
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt answers 1 when it took the value; musl's answers 0 and changes nothing.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_NEVER))


def take_sample(stat: Path = Path("/proc/stat")) -> CpuSample | None:
    """The CPU time the CPUs this process may use have been busy (/proc/stat's `cpuN` lines, or its
    first line, all CPUs, without them) and this process's own, now."""
    try:
        lines = stat.read_bytes().splitlines()
    except OSError:
        return None
    allowed = {f"cpu{n}".encode() for n in allowed_cpus()}
    mine = [line for line in lines if line.split(b" ", 1)[0] in allowed]
    chosen = mine or lines[:1]
    if not chosen:
        return None
    busy = 0
    for line in chosen:
        ticks = _busy_ticks(line)
        if ticks is None:
            return None
        busy += ticks
    return CpuSample(busy, time.process_time(), time.monotonic())


def _busy_ticks(line: bytes) -> int | None:
    """A /proc/stat cpu line's clock ticks not idle: user nice system idle iowait irq softirq steal …"""
    fields = line.split()
    if len(fields) < 5 or not fields[0].startswith(b"cpu"):
        return None
    try:
        ticks = [int(v) for v in fields[1:]]
    except ValueError:
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait (since Linux 2.5.41)
    # guest and guest_nice (fields 9 and 10) are already counted in user and nice
    return sum(ticks[:8]) - idle


def other_cores(start: CpuSample, end: CpuSample, ticks_per_second: int) -> float:
    """How many cores, on average between the samples, other processes kept busy."""
    seconds = end.at - start.at
    if seconds <= 0:
        return float("inf")
    others = (end.busy - start.busy) / ticks_per_second - (end.own - start.own)
    return max(0.0, others / seconds)


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def affinity_cores() -> int:
    """How many CPUs this process may run on."""
    return len(allowed_cpus())


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> float:
    """The CPUs this process may run on, fewer under a cgroup's CPU quota (v2's cpu.max, v1's cfs files)."""
    cores = float(affinity_cores())
    with contextlib.suppress(OSError, ValueError, ZeroDivisionError):
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    with contextlib.suppress(OSError, ValueError, ZeroDivisionError):
        v1 = cgroup / "cpu"
        quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
        if quota_us > 0:
            cores = min(cores, quota_us / int((v1 / "cpu.cfs_period_us").read_text()))
    return cores


def torch_threads() -> int:
    """The threads torch will start: OMP_NUM_THREADS when it is a count, never more than one per CPU of
    the affinity (torch's own cap; it starts one per physical core, and a CPU quota does not lower it)."""
    cores = affinity_cores()
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if first.isdigit() and int(first) > 0:  # isdigit: "3_0" is no count to libgomp, whatever int() says
        return min(int(first), cores)
    return cores
