"""generation/runner.py: out of memory on CPU halves the batch and then names the dialogue; Ctrl-C exits 130 and
keeps the finished results."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from common.env import offline_env
from generation.batching import BatchLimit
from generation.runner import generate_all
from generation.sidecar import SIDECAR_SUFFIX
from helpers import DEV, INFER, TEST, TRAIN, load_json, tools_command


# --------------------------------------------------------------------------- memory, locks, signals


def test_cpu_out_of_memory_halves_the_batch_then_names_the_dialogue():
    from common.errors import UserError
    from generation.jobs import Job

    jobs = [Job(f"d{i}", list(range(10 + i))) for i in range(8)]
    sizes = []

    def generate(batch):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return [["ok"]] * len(batch)

    final = generate_all(jobs, generate, limit=BatchLimit(None, max_dialogues=8), progress=False)  # fixed batches
    assert final == BatchLimit(None, max_dialogues=2) and sizes[:3] == [8, 4, 2]

    def always(batch):
        raise MemoryError

    with pytest.raises(UserError, match=r"CPU out of memory even at batch size 1, on dialogue 'd7' \(17 prompt tokens\)"):
        generate_all(jobs, always, limit=BatchLimit(None, max_dialogues=2), progress=False)

    def bug(batch):
        raise RuntimeError("shape mismatch")  # not memory: the traceback is kept

    with pytest.raises(RuntimeError, match="shape mismatch"):
        generate_all(jobs, bug, limit=BatchLimit(100), progress=False)


def test_ctrl_c_exits_130_and_keeps_the_finished_results(tmp_path, tiny_model, write_nikl):
    raw = [{**item, "id": f"{item['id']}-{copy}", "output": ""} for copy in range(3) for path in (TRAIN, DEV, TEST)
           for item in load_json(path)]
    data = write_nikl(raw)
    out = tmp_path / "result.json"
    sidecar = Path(str(out) + SIDECAR_SUFFIX)
    process = subprocess.Popen(tools_command() + [*INFER[:-1], "48", "--batch-size", "1", "--ckpt", str(tiny_model),
                                                  "--input", str(data), "--output", str(out)],
                               env=offline_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not (sidecar.exists() and len(sidecar.read_bytes().splitlines()) >= 2):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0].decode()
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 130, output
    assert "interrupted" in output.splitlines()[-1] and "Traceback" not in output
    assert sidecar.exists() and not out.exists() and not Path(str(out) + ".lock").exists()
