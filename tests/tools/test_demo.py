"""`make demo` end to end (the reduced DEMO_FAST=1 variant): the real chain on CPU with the tiny model.

The learnable task → EXAONE-layout tiny model → `tools convert-exaone` → SFT data → `tools check-data` → the base
model on dev → `axolotl train recipes/exaone_sft.yml` (CPU overlay and named overrides, a checkpoint per step) →
`tools select-checkpoint` → `tools infer` + `tools score` → candidates from the first checkpoint (the DPO start)
→ `tools build-dpo-data` (train pairs, held-out dev pairs) → `tools check-data` → `axolotl train
recipes/exaone_dpo.yml` from that checkpoint → infer + score → `tools rerank` → score → `tools compare`; then a
re-run skips every stage. Under the `extended` marker (~60 s; CI runs it). The full variant, which learns the task
and checks the learning lines, runs under the `learning` marker (tests/demo/test_pipeline.py).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.io import read_jsonl
from helpers import REPO, load_json
from demo.pipeline import CANDIDATES

pytestmark = [pytest.mark.axolotl, pytest.mark.extended]  # CI runs it (-m extended); the full demo: -m learning

STAGES = 22
TASK = Path("data") / "learnable"


@pytest.fixture(scope="module")
def demo_run(run_once):
    """`make demo` twice in one work directory, once per test run (conftest.run_once): (workdir, first output,
    re-run output)."""

    def make_demo(workdir: Path) -> dict:
        venv = Path(sys.executable).parent.parent
        # `make demo` itself, on this test's environment: -o keeps make from (re)installing the venv.
        command = ["make", "--no-print-directory", "-C", str(REPO), "-o", str(venv / ".installed"), "demo",
                   f"VENV={venv}", f"DEMO_WORKDIR={workdir}"]
        env = {**os.environ, "DEMO_FAST": "1"}
        outputs = []
        for run, timeout in (("make demo", 1500), ("make demo (re-run)", 300)):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                return {"failure": f"{run} failed (exit {done.returncode}):\n{done.stdout[-4000:]}{done.stderr[-4000:]}"}
            outputs.append(done.stdout)
        return {"workdir": str(workdir), "first": outputs[0], "rerun": outputs[1]}

    record = run_once("demo", make_demo)
    return Path(record["workdir"]), record["first"], record["rerun"]


def table_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("|")]


def task_file(workdir: Path, split: str) -> Path:
    return workdir / TASK / f"일상대화요약_{split}.json"


def test_every_stage_ran_and_the_table_is_written(demo_run):
    workdir, output, rerun = demo_run
    table = table_of(output)
    assert len(table) == 2 + STAGES + 1  # header, separator, one row per stage, total
    assert "skipped" not in "\n".join(table)
    # the re-run's table (all skipped, same scores) is what demo_results.md holds now
    assert table_of((workdir / "demo_results.md").read_text(encoding="utf-8")) == table_of(rerun)
    scored = [row for row in table if "ROUGE-1" in row.split("|")[4]]  # the score column
    assert len(scored) == 6  # base model, checkpoint selection, SFT, DPO, MBR rerank, the comparison
    assert "learning lines: not checked with --fast" in output


def test_the_results_file_holds_every_stages_dev_rouge1(demo_run):
    workdir, output, _ = demo_run
    results = load_json(workdir / "demo_results.json")
    assert results["fast"] is True and results["checks"] == []
    for key, report in (("base", "dev_base"), ("sft", "dev_sft"), ("dpo", "dev_dpo"), ("rerank", "dev_rerank")):
        assert results[key] == load_json(workdir / "results" / f"{report}.score.json")["rouge1"], key
    selection = load_json(workdir / "outputs" / "exaone-sft" / "selection.json")
    start = next(row for row in selection["rows"] if row["name"] == "checkpoint-1")  # the DPO start
    assert results["dpo_start"] == start["metrics"]["rouge1"]


def test_the_data_is_checked_before_each_training(demo_run):
    workdir, output, _ = demo_run
    order = [line.split("] ", 1)[1].split(" …")[0] for line in output.splitlines() if line.startswith("[")]
    assert order.index("check SFT data (tools check-data)") < order.index("SFT (recipes/exaone_sft.yml, axolotl)")
    assert order.index("check DPO data (tools check-data)") < order.index("DPO (recipes/exaone_dpo.yml, axolotl)")
    for kind in ("sft", "dpo"):
        log = next(path for path in (workdir / "logs").glob("*.log") if f"check-{kind}-data" in path.name)
        text = log.read_text(encoding="utf-8")
        assert "$ tools check-data" in text and text.count("PASS ") == 3 and "FAIL" not in text, kind


def test_the_output_is_one_line_per_stage_and_the_logs_hold_the_rest(demo_run):
    workdir, output, _ = demo_run
    lines = output.splitlines()
    assert len(lines) <= 2 * STAGES + 8, output  # a line per stage, the table, the learning lines
    assert sum(line.startswith("[") for line in lines) == STAGES
    for noise in ("Failed to load", "_pytree", "Setting accelerator", "kernels-community", "Traceback", "axolotl."):
        assert noise not in output, noise
    logs = sorted((workdir / "logs").glob("*.log"))
    assert len(logs) == STAGES and all(log.stat().st_size > 0 for log in logs)
    assert "$ tools select-checkpoint" in next(log for log in logs if "select-checkpoint" in log.name).read_text()


def test_the_checkpoint_is_selected_by_the_task_score(demo_run):
    workdir, _, _ = demo_run
    run = workdir / "outputs" / "exaone-sft"
    selection = json.loads((run / "selection.json").read_text(encoding="utf-8"))
    assert [row["name"] for row in selection["rows"]][:3] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert all(row["eval_loss"] is not None for row in selection["rows"][:3])  # dev loss at every checkpoint
    best = max(selection["rows"], key=lambda row: row["metrics"]["rouge1"])
    assert selection["best"] == best["name"] and (run / "best").resolve() == Path(best["path"]).resolve()
    assert (workdir / "selection.md").read_text(encoding="utf-8") == (run / "selection.md").read_text(encoding="utf-8")
    assert (workdir / "selection.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sft_from_the_tiny_models_weights_then_dpo_from_its_first_checkpoint(demo_run):
    workdir, output, _ = demo_run
    sft = workdir / "outputs" / "exaone-sft"
    assert (sft / "model.safetensors").is_file() and not (sft / "adapter_model.safetensors").exists()  # full SFT
    config = (workdir / "configs" / "exaone_sft.cpu.yml").read_text(encoding="utf-8")
    assert "# Overrides (--set): learning_rate 0.002 (recipe: 2e-05)" in config  # named, in the derived config
    sft_row = next(row for row in table_of(output) if row.startswith("| SFT (recipes/exaone_sft.yml"))
    assert "overrides: learning_rate 0.002, micro_batch_size 16" in sft_row  # and in the demo's table
    dpo = workdir / "outputs" / "exaone-dpo"
    assert (dpo / "adapter_model.safetensors").is_file()
    base = json.loads((dpo / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base) == (sft / "checkpoint-1").resolve()  # the deliberately under-trained start


def test_candidates_and_dpo_pairs_are_real(demo_run):
    workdir, _, _ = demo_run
    for split in ("train", "dev"):  # train pairs to learn from, dev pairs held out
        examples = load_json(task_file(workdir, split))
        candidates = read_jsonl(workdir / "candidates" / f"{split}_dpo_start.jsonl")
        assert sorted(row["id"] for row in candidates) == sorted(item["id"] for item in examples)
        assert all(len(row["candidates"]) == CANDIDATES[split] for row in candidates)
        sampled = {row["id"]: {text.strip() for text in row["candidates"]} for row in candidates}
        references = {item["id"]: item["output"] for item in examples}
        pairs = read_jsonl(workdir / "data" / "dpo" / f"{split}.jsonl")
        assert pairs
        for row in pairs:  # ref-vs-worst: the reference is chosen, a sampled candidate rejected
            assert row["chosen"] == {"role": "assistant", "content": references[row["id"]]}
            assert row["rejected"]["content"] in sampled[row["id"]]
            assert row["score_chosen"] > row["score_rejected"]


def test_submissions_and_reports(demo_run):
    workdir, _, _ = demo_run
    dev = load_json(task_file(workdir, "dev"))
    for name in ("dev_base", "dev_sft", "dev_dpo", "dev_rerank"):
        submission = load_json(workdir / "results" / f"{name}.json")
        assert [item["id"] for item in submission] == [item["id"] for item in dev]
        assert all(isinstance(item["output"], str) for item in submission)
        report = load_json(workdir / "results" / f"{name}.score.json")
        assert report["n"] == len(dev) and 0 <= report["rouge1"] <= 100
    reranked = {item["id"]: item["output"] for item in load_json(workdir / "results" / "dev_rerank.json")}
    for row in read_jsonl(workdir / "candidates" / "dev_dpo.jsonl"):
        assert reranked[row["id"]] in row["candidates"]  # MBR picks one of the candidates


def test_the_table_says_what_dpo_changed_and_the_comparison_is_written(demo_run):
    workdir, output, _ = demo_run
    table = table_of(output)
    dpo_training = next(row for row in table if row.startswith("| DPO (recipes/exaone_dpo.yml"))
    assert "reward accuracy" in dpo_training and "held-out pairs" in dpo_training, dpo_training
    start = load_json(workdir / "outputs" / "exaone-sft" / "selection" / "checkpoint-1.dev.json")
    dpo = load_json(workdir / "results" / "dev_dpo.json")
    changed = sum(a["output"] != b["output"] for a, b in zip(start, dpo))
    assert f"{changed}/{len(dpo)} dev summaries differ from the DPO start's" in next(
        row for row in table if row.startswith("| score dev (DPO)"))
    report = workdir / "compare"
    data = load_json(report / "compare.json")
    names = ["SFT", "DPO-start", "DPO", "MBR"]
    assert [system["name"] for system in data["systems"]] == names and data["n"] == len(dpo)
    assert {(pair["first"], pair["second"]) for pair in data["pairs"]} == {
        (first, second) for index, first in enumerate(names) for second in names[index + 1:]}
    assert (report / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    compared = next(row for row in table if row.startswith("| compare dev"))
    dpo_pair = next(pair for pair in data["pairs"] if (pair["first"], pair["second"]) == ("SFT", "DPO")
                    and pair["metric"] == "rouge1")
    assert f"DPO {dpo_pair['difference']:+.2f} [{dpo_pair['low']:+.2f}, {dpo_pair['high']:+.2f}] {dpo_pair['verdict']}" in compared


def test_rerun_skips_every_up_to_date_stage(demo_run):
    _, output, rerun = demo_run
    assert rerun.count("up to date, skipped") == STAGES
    scores = [row.split("|")[4] for row in table_of(output)[2:-1]]
    assert [row.split("|")[4] for row in table_of(rerun)[2:-1]] == scores  # skipped stages still show scores
