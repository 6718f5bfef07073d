"""The suite's fixtures and hooks, for every folder of tests/: the offline environment, a tiny EXAONE-shaped model
built once per session, and ``run_once``, which makes each Axolotl run once per test run however many pytest-xdist
workers share it. Plain helpers and constants (the sample files, `tools` in-process, …) are in helpers.py."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from common.env import OFFLINE_ENV
from helpers import CORPUS, DEV, REHEARSAL_MODES, REPO, load_json, tiny_bleurt, tools_cli, wordpiece_tokenizer


# No hub, no telemetry, no wandb: everything a test needs is built locally.
for key, value in OFFLINE_ENV.items():
    os.environ.setdefault(key, value)
# One CPU thread for torch here and in every subprocess (Axolotl, `tools`, `make demo`), unless the caller says
# otherwise: `make test` runs two pytest workers on a 2-core machine, and the tiny models gain nothing from more
# threads while oversubscribed cores made inference 3–20× slower (benchmarks/infer_throughput.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# `--backend vllm` runs itself again in vLLM's own environment when it exists (`make install-vllm`); no test
# does so by accident because a developer has built one (tests that want it set NIKL_VLLM_VENV themselves).
os.environ["NIKL_VLLM_VENV"] = str(REPO / "tests" / "no-vllm-environment")
# Axolotl's CLI package configures logging when it is first imported (logging.config.dictConfig, which closes every
# handler already installed). absl's handler, which rouge_score installs, then closes the stream it holds — pytest's
# capture file, if a test imported rouge_score first — and every later test of that worker fails ("I/O operation on
# closed file"). Imported here, before any test, it finds no such handler.
with contextlib.suppress(ImportError):
    import axolotl.cli  # noqa: F401


# Test files that inspect Axolotl runs other files make (the recipe tests: the documentation's pipeline session,
# tests/test_readme.py, and the rehearsals, tests/training/test_rehearse.py): scheduled after everything else.
INSPECT_OTHERS_RUNS = {"test_recipes.py"}


def pytest_collection_modifyitems(config, items):
    """`gpu`-marked tests run only where torch sees a CUDA GPU; elsewhere they are skipped, saying why.
    `rehearse_matrix` tests (every recipe rehearsed in every mode: CI's own leg) run only when `-m` names them.
    Under pytest-xdist (`make test`), the `axolotl` tests are collected first: the scheduler then hands the
    long ones out at the start instead of leaving one for the end, when the other worker has nothing left. The
    files of :data:`INSPECT_OTHERS_RUNS` come last, when the runs they inspect are made: a worker that reached
    them early would wait, idle, for the other to finish a run."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: (item.path.name in INSPECT_OTHERS_RUNS,  # stable: otherwise as collected
                                     item.get_closest_marker("axolotl") is None))
    if "rehearse_matrix" not in (config.option.markexpr or ""):
        skip = pytest.mark.skip(reason="the whole rehearsal matrix runs with -m rehearse_matrix (CI)")
        for item in items:
            if item.get_closest_marker("rehearse_matrix"):
                item.add_marker(skip)
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible to torch)")
        for item in gpu_tests:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from exaone.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-exaone") / "model")


@pytest.fixture(scope="session")
def run_once(tmp_path_factory):
    """``run_once(name, make)``: ``make(directory)`` runs once per test run, in whichever pytest-xdist worker asks
    first, while the others wait for it; every caller gets the dict it returned (stored as JSON). The Axolotl runs
    (documentation sessions, recipes, the demo) are made this way: each training happens once per `make test`,
    however the tests that inspect it are spread over the workers. A result with a ``failure`` (or an exception
    from ``make``) fails every test that asks for it, without running it again."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' basetemps are siblings

    def once(name: str, make) -> dict:
        record = shared / f"{name}.json"
        with open(shared / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if this worker dies
            if not record.exists():
                directory = shared / name
                shutil.rmtree(directory, ignore_errors=True)  # left by a worker that died making it
                directory.mkdir()
                try:
                    result = make(directory)
                except Exception as error:  # recorded: the other tests that need it fail the same way, at once
                    result = {"failure": f"{name}: {type(error).__name__}: {error}"}
                record.with_suffix(".tmp").write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
                record.with_suffix(".tmp").replace(record)
        result = json.loads(record.read_text(encoding="utf-8"))
        if result.get("failure"):
            pytest.fail(result["failure"], pytrace=False)
        return result

    return once



@pytest.fixture(scope="session")
def rehearsal(run_once, tiny_model):
    """``rehearsal(recipe, mode, processes=2)``: `tools rehearse` of ``recipes/RECIPE`` in a mode of
    :data:`REHEARSAL_MODES` on the tiny model, once per test run (:func:`run_once`) → its folder, its
    ``rehearsal.json`` and the command's output. A failed rehearsal fails every test that needs it."""

    def make(recipe: str, mode: str, processes: int, work: Path) -> dict:
        result = tools_cli("rehearse", REPO / "recipes" / recipe, "--processes", processes,
                           "--deepspeed", REHEARSAL_MODES[mode],
                           "--base-model", tiny_model, "--output-dir", work)
        if result.exit_code != 0:
            return {"failure": f"tools rehearse {recipe} ({mode}, {processes} processes) failed:\n{result.output}"}
        return {"work": str(work), "output": result.output}

    def run(recipe: str, mode: str, processes: int = 2) -> tuple[Path, dict, str]:
        found = run_once(f"rehearse-{Path(recipe).stem}-{mode}-{processes}p",
                         lambda work: make(recipe, mode, processes, work))
        work = Path(found["work"])
        return work, json.loads((work / "rehearsal.json").read_text(encoding="utf-8")), found["output"]

    return run


@pytest.fixture(scope="session")
def doc_session(run_once):
    """Run a documentation session (doc_blocks.Session: CPU blocks, in order, as written) once per test run and
    return it (doc_blocks.SessionRun); a failed session fails every test that needs it, naming the command."""
    from doc_blocks import SessionRun, run_session

    def run(session) -> SessionRun:
        record = run_once(f"docs-{session.name}", lambda directory: run_session(session, directory))
        return SessionRun(Path(record["work"]), record["ran"])

    return run


@pytest.fixture
def write_nikl(tmp_path):
    """Write a NIKL file from a Python object (or raw text) and return its path."""

    def write(data, name: str = "data.json") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return path

    return write


@pytest.fixture
def full_run(tiny_model, tmp_path) -> Path:
    """A training output_dir with one full-weight checkpoint (a copy of the tiny model)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "checkpoint-1")
    return run


@pytest.fixture
def systems(write_nikl):
    """Two submissions on the dev fixture: halves of the reference, and a summary with markup in it."""
    items = load_json(DEV)
    first = write_nikl([{**item, "output": item["output"][: len(item["output"]) // 2]} for item in items], "sft.json")
    second = [{**item, "output": item["output"][len(item["output"]) // 3:]} for item in items]
    second[0]["output"] = "<script>alert('x')</script> & " + second[0]["output"]
    return first, write_nikl(second, "dpo.json")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 3-layer BertModel (max 64 positions) and its tokenizer, saved as a local model directory."""
    from transformers import BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = wordpiece_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def spm_model():
    """A SentencePiece model (BLEURT-20's tokenizer kind) whose special tokens are pieces."""
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=out, vocab_size=600, character_coverage=1.0,
        pad_id=0, pad_piece="[PAD]", unk_id=1, unk_piece="[UNK]", bos_id=-1, eos_id=-1,
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"], minloglevel=2)
    return out.getvalue()


@pytest.fixture(scope="module")
def bleurt_spm(tmp_path_factory, spm_model):
    """BLEURT-20's shape in miniature: SentencePiece, 16-dim embeddings projected to 32."""
    directory = tiny_bleurt(tmp_path_factory.mktemp("tiny-bleurt") / "model", 600, 16)
    (directory / "spm.model").write_bytes(spm_model)
    return directory
