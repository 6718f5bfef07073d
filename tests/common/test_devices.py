"""common/devices.py: thread choice on a busy machine (idle CPUs counted from /proc/stat, the environment's
setting wins) and OpenMP threads that sleep instead of spinning while they wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from common.devices import available_cpus, cpu_times, default_threads, idle_cpus, let_waiting_threads_sleep
from helpers import REPO

# --------------------------------------------------------------------------- CPU threads


def openmp_settings(env: dict[str, str]) -> str:
    """What torch's OpenMP runtime says it was given, in a process that imports `tools` and then torch."""
    result = subprocess.run([sys.executable, "-c", "import tools.cli, torch; torch.ones(4, 4) @ torch.ones(4, 4)"],
                            cwd=REPO, env={**env, "OMP_DISPLAY_ENV": "TRUE"}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_tools_makes_waiting_openmp_threads_sleep():
    """Set before torch loads its OpenMP runtime, which reads it once; a wait policy of the user's own stays."""
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in openmp_settings(env)
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in openmp_settings({**env, "OMP_WAIT_POLICY": "ACTIVE"})
    mine = {"GOMP_SPINCOUNT": "1000"}
    assert not let_waiting_threads_sleep(mine) and mine == {"GOMP_SPINCOUNT": "1000"}


STAT_BEFORE = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 5 0 5 50 0 0 0 0 0 0\ncpu1 5 0 5 50 0 0 0 0 0 0\nintr 1 2\n"
# Over the interval cpu0 stayed idle (100 idle of 100), cpu1 was busy (90 user, 5 steal: 5 idle of 100).
STAT_AFTER = "cpu  105 0 10 205 0 0 0 5 0 0\ncpu0 5 0 5 150 0 0 0 0 0 0\ncpu1 95 0 5 55 0 0 0 5 0 0\nintr 1 2\n"


def test_idle_cpus_are_counted_from_proc_stat():
    assert cpu_times(STAT_BEFORE) == {0: (50, 60), 1: (50, 60)}
    assert idle_cpus(STAT_BEFORE, STAT_AFTER, {0, 1}) == pytest.approx(1.05)
    assert idle_cpus(STAT_BEFORE, STAT_AFTER, {1}) == pytest.approx(0.05)  # only the CPUs this process may use


@pytest.mark.skipif(available_cpus() < 2, reason="needs 2 CPUs: one kept busy, one to count")
def test_the_default_leaves_out_a_cpu_another_process_keeps_busy():
    cpu = sorted(os.sched_getaffinity(0))[0]
    spin = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"
    spinner = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.5)
        assert 1 <= default_threads() <= available_cpus() - 1
    finally:
        spinner.kill()
        spinner.wait()


def test_threads_from_the_environment_win(monkeypatch):
    import torch

    from common.devices import use_threads

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        assert use_threads() == 1 and torch.get_num_threads() == 1
        assert use_threads(2) == 2
    finally:
        torch.set_num_threads(before)
