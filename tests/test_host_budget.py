"""One budget per host. Cores (openft/cores.py): a process counts the cores its affinity gives it,
capped by its cgroup's CPU quota, v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us` over
`cpu.cfs_period_us`), read here from fake cgroup folders. Memory (openft/memory.py): what the
processes of a host record they hold is taken off what each of the others may hold, until they
die. (The engine and the worker on it: test_serving.py, test_job_memory.py.)"""

import subprocess
import sys
import textwrap

import pytest

from openft import cores
from openft.memory import HostMemory

GiB = 2**30


@pytest.fixture
def many_cores(monkeypatch):
    """A 64-core affinity, as a container on a large host sees it."""
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(64)))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # v2: 1.5 CPUs, rounded up
        ({"cpu.max": "400000 100000\n"}, 4),
        ({"cpu.max": "max 100000\n"}, 64),  # v2: no quota
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # v1
        ({"cpu,cpuacct/cpu.cfs_quota_us": "300000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 3),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 64),  # v1: no quota
        ({}, 64),  # no cgroup files at all
    ],
)
def test_the_cgroup_quota_caps_the_cores_a_process_uses(many_cores, tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cores.usable_cores(tmp_path) == expected


def test_affinity_below_the_quota_wins(monkeypatch, tmp_path):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1})
    (tmp_path / "cpu.max").write_text("800000 100000\n")
    assert cores.usable_cores(tmp_path) == 2


def test_what_others_hold_is_taken_off_until_they_die(tmp_path):
    total = 64 * GiB
    mine = HostMemory(tmp_path, "engine", "cpu", total)
    assert mine.room() == total
    # Another process holds 40 GiB of RAM and 10 GiB of a GPU's memory, then dies by SIGKILL.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from openft.memory import HostMemory
                ram = HostMemory({str(tmp_path)!r}, "trainer", "cpu", {total})
                ram.record({40 * GiB})
                gpu = HostMemory({str(tmp_path)!r}, "trainer", "cuda", {total})
                gpu.record({10 * GiB})
                print("holding", flush=True)
                time.sleep(600)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert mine.room() == total - 40 * GiB  # the GPU's memory is another device's
        mine.record(10 * GiB)
        other = HostMemory(tmp_path, "trainer", "cpu", total)
        assert other.room() == total - 50 * GiB
    finally:
        holder.kill()
        holder.wait()
    assert mine.room() == total  # a dead process holds nothing
    assert sorted(path.name.split("-")[0] for path in tmp_path.iterdir() if not path.name.startswith(".")) == [
        "engine"
    ]  # its records are removed; `other` recorded nothing
