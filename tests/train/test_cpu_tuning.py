"""What `cnnspec train` sets for the CPU before torch loads (cnnspec/cpu_tuning.py): how torch's OpenMP
threads wait (spinning only when each has a free core), and glibc keeping freed memory for reuse.

The settings are process-wide, so every check that applies them runs in a child process: the pytest
process's own allocator and environment stay as they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnnspec.cpu_tuning import (
    CpuSample,
    affinity_cores,
    allowed_cpus,
    other_cores,
    spins,
    take_sample,
    torch_threads,
    usable_cores,
)

ROOT = Path(__file__).resolve().parents[2]


def test_threads_spin_only_when_each_has_a_core_the_others_leave_free() -> None:
    assert spins(others=0.0, threads=2, cores=2)
    assert spins(others=0.3, threads=2, cores=2)  # a tick or two of measuring error, or a daemon
    assert not spins(others=0.4, threads=2, cores=2)
    assert not spins(others=1.0, threads=2, cores=2)  # one busy process: a thread would wait on a shared core
    assert spins(others=1.0, threads=1, cores=2)
    assert not spins(others=0.0, threads=3, cores=2)  # more threads than cores
    assert not spins(others=0.0, threads=2, cores=1.5)  # a CPU quota of 1.5 cores


def test_other_processes_use_is_all_cpus_busy_time_less_this_process_own() -> None:
    start = CpuSample(busy=1000, own=2.0, at=50.0)
    # 0.5 s later: the CPUs were busy 110 ticks (1.1 s at 100 ticks a second), 0.6 s of it this process.
    end = CpuSample(busy=1110, own=2.6, at=50.5)
    assert other_cores(start, end, 100) == pytest.approx(1.0)
    assert other_cores(start, CpuSample(busy=1040, own=2.6, at=50.5), 100) == 0.0  # never below zero
    assert other_cores(start, CpuSample(busy=1000, own=2.0, at=50.0), 100) == float("inf")  # no time: busy


@pytest.mark.parametrize(
    ("line", "busy"),
    [
        # user nice system idle iowait irq softirq steal guest guest_nice: busy is all but idle and iowait
        ("100 5 20 900 7 1 2 3 40 0", 131),
        ("100 5 20 900", 125),  # a kernel before iowait was counted
    ],
)
def test_busy_time_is_the_sum_over_the_cpus_this_process_may_use(tmp_path: Path, line: str, busy: int) -> None:
    # Each CPU this process may use, plus one it may not (cpu4096) that is far busier: only the first count.
    allowed = sorted(allowed_cpus())
    lines = ["cpu  1 1 1 1 1 1 1 1 1 1", *(f"cpu{n} {line}" for n in allowed), "cpu4096 99999 0 0 1 0 0 0 0 0 0"]
    stat = tmp_path / "stat"
    stat.write_text("\n".join([*lines, "intr 1 2 3", ""]))
    sample = take_sample(stat)
    assert sample is not None and sample.busy == busy * len(allowed)
    # Without per-CPU lines: the first line, all CPUs.
    stat.write_text(f"cpu  {line}\nintr 1 2 3\n")
    sample = take_sample(stat)
    assert sample is not None and sample.busy == busy


@pytest.mark.parametrize("text", ["", "intr 1 2 3\n", "cpu  a b c d e\n", "cpu 1 2\n"])
def test_an_unreadable_proc_stat_gives_no_sample(tmp_path: Path, text: str) -> None:
    stat = tmp_path / "stat"
    stat.write_text(text)
    assert take_sample(stat) is None
    assert take_sample(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("value", "threads"), [("1", 1), ("4,2", None), ("64", None), ("3_0", None), ("0", None), ("x", None), ("", None)]
)
def test_torch_threads_are_omp_num_threads_capped_at_the_cpus(
    monkeypatch: pytest.MonkeyPatch, value: str, threads: int | None
) -> None:
    # torch runs no more threads than CPUs (OMP_NUM_THREADS=4 on 2 cores: 2); "3_0" is no count to libgomp.
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert torch_threads() == (threads if threads is not None else affinity_cores())


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage\n"}, None),
        ({"cpu.max": "100000 0\n"}, None),
        ({}, None),
    ],
)
def test_a_cgroup_cpu_quota_lowers_the_usable_cores(tmp_path: Path, files: dict[str, str], quota: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    cores = affinity_cores()
    assert usable_cores(tmp_path) == (cores if quota is None else min(cores, quota))


def _child(code: str, env: dict[str, str] | None = None) -> dict:
    """Run `code` in a fresh interpreter (no torch loaded) with OMP_WAIT_POLICY only as `env` sets it;
    it prints one JSON object."""
    inherited = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**inherited, **(env or {}), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


TUNE = """
import json, os
from cnnspec import cpu_tuning
cpu_tuning.prepare(own_process=True)
cpu_tuning.tune_for_compute({processes})
print(json.dumps({{"policy": os.environ.get("OMP_WAIT_POLICY"), "note": cpu_tuning.take_note()}}))
"""


def test_a_users_wait_policy_is_kept() -> None:
    for policy in ("ACTIVE", "PASSIVE"):
        found = _child(TUNE.format(processes=1), {"OMP_WAIT_POLICY": policy})
        assert found["policy"] == policy
        assert found["note"] is None  # nothing chosen: the run's log has no line about it
    # libgomp's own spin count decides over the policy: the user chose, so nothing is said either.
    assert _child(TUNE.format(processes=1), {"GOMP_SPINCOUNT": "infinite"})["note"] is None


def test_world_size_counts_only_in_torchrun_s_whole_environment(busy_cores: None) -> None:
    # WORLD_SIZE alone does not make a run distributed (training reads RANK and LOCAL_RANK with it):
    # the threads are chosen for one process, here beside busy cores.
    alone = _child(TUNE.format(processes=1), {"WORLD_SIZE": "2"})
    assert alone["note"] is not None and "sleeping while they wait" in alone["note"]
    torchrun = _child(TUNE.format(processes=1), {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert torchrun == {"policy": "PASSIVE", "note": None}


def test_several_training_processes_keep_their_threads_sleeping() -> None:
    found = _child(TUNE.format(processes=2))
    assert found["policy"] == "PASSIVE"
    assert found["note"] is None


@pytest.fixture()
def busy_cores() -> Iterator[None]:
    """One busy process per CPU this process may use, for as long as the test runs."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(1, round(usable_cores())))]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_threads_sleep_when_other_processes_use_the_cores(busy_cores: None) -> None:
    found = _child(TUNE.format(processes=1))
    assert found["policy"] == "PASSIVE"
    assert found["note"].startswith("cpu threads: ")
    assert "sleeping while they wait (OMP_WAIT_POLICY=PASSIVE: other processes used " in found["note"]
    assert found["note"].endswith("; freed memory kept for reuse")


HEAP_USE = """
import ctypes, json
from cnnspec import cpu_tuning

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                     "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
kept = {setup}
start = libc.mallinfo2()
block = libc.malloc({size})
held = libc.mallinfo2()
libc.free(block)
freed = libc.mallinfo2()
print(json.dumps({{"kept": kept, "mapped": held.hblks - start.hblks, "heap_after_free": freed.arena - start.arena}}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2")
def test_glibc_keeps_an_activation_sized_block_in_the_heap_after_the_tuning() -> None:
    size = 16 * 2**20  # one 128×32×32×32 float activation
    # glibc's default in a fresh process: a block this size is mapped on its own (unmapped when freed).
    assert _child(HEAP_USE.format(setup="None", size=size))["mapped"] == 1
    # Tuned: it comes from the heap (the mmap threshold), and the heap keeps it once it is freed (no trim).
    tuned = _child(HEAP_USE.format(setup="cpu_tuning.keep_freed_memory()", size=size))
    assert tuned["kept"] is True and tuned["mapped"] == 0
    assert tuned["heap_after_free"] >= 0.9 * size  # the heap's free space before served a little of it


def test_a_caller_that_goes_on_after_the_command_is_not_tuned() -> None:
    # cnnspec.cli.run() in someone's own process (a test, a script): PASSIVE as for every command, but
    # neither the wait policy nor the allocator of a process that is not the command's own changes.
    code = TUNE.format(processes=1).replace("prepare(own_process=True)", "prepare(own_process=False)")
    assert _child(code) == {"policy": "PASSIVE", "note": None}
    untouched = "(cpu_tuning.prepare(own_process=False), cpu_tuning.tune_for_compute())"
    assert _child(HEAP_USE.format(setup=untouched, size=16 * 2**20))["mapped"] == 1
