"""`make demo` end to end (the reduced DEMO_FAST=1 variant): the real chain on CPU with the tiny model.

EXAONE-layout tiny model → `tools convert-exaone` → SFT data → `axolotl train recipes/exaone_lora.yml` (CPU
overlay, a checkpoint per step) → `tools select-checkpoint` → merge the selected one → `tools infer` + `tools score`
→ `tools infer --num-candidates 4` → `tools build-dpo-data` → `axolotl train recipes/exaone_dpo.yml`
(CPU overlay) → a DPO adapter is saved → infer + score → `tools rerank` → score; then a re-run skips
every stage.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.io import read_jsonl
from conftest import DEV, REPO, TRAIN, load_json

pytestmark = pytest.mark.axolotl

STAGES = 17


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


def test_every_stage_ran_and_the_table_is_written(demo_run):
    workdir, output, rerun = demo_run
    table = table_of(output)
    assert len(table) == 2 + STAGES + 1  # header, separator, one row per stage, total
    assert "skipped" not in "\n".join(table)
    # the re-run's table (all skipped, same scores) is what demo_results.md holds now
    assert (workdir / "demo_results.md").read_text(encoding="utf-8").splitlines() == table_of(rerun)
    scored = [row for row in table if "ROUGE-1" in row]
    assert len(scored) == 5  # checkpoint selection, SFT, DPO, MBR rerank, the comparison
    assert "The tiny random model's scores are meaningless" in output


def test_the_output_is_one_line_per_stage_and_the_logs_hold_the_rest(demo_run):
    workdir, output, _ = demo_run
    lines = output.splitlines()
    assert len(lines) <= 48, output  # two screens
    assert sum(line.startswith("[") for line in lines) == STAGES
    for noise in ("Failed to load", "_pytree", "Setting accelerator", "kernels-community", "Traceback", "axolotl."):
        assert noise not in output, noise
    logs = sorted((workdir / "logs").glob("*.log"))
    assert len(logs) == STAGES and all(log.stat().st_size > 0 for log in logs)
    assert "$ tools select-checkpoint" in next(log for log in logs if "select-checkpoint" in log.name).read_text()


def test_the_checkpoint_is_selected_by_the_task_score(demo_run):
    workdir, _, _ = demo_run
    run = workdir / "outputs" / "exaone-lora"
    selection = json.loads((run / "selection.json").read_text(encoding="utf-8"))
    assert [row["name"] for row in selection["rows"]][:3] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert all(row["eval_loss"] is not None for row in selection["rows"][:3])  # dev loss at every checkpoint
    best = max(selection["rows"], key=lambda row: row["metrics"]["rouge1"])
    assert selection["best"] == best["name"] and (run / "best").resolve() == Path(best["path"]).resolve()
    assert (workdir / "selection.md").read_text(encoding="utf-8") == (run / "selection.md").read_text(encoding="utf-8")
    assert (workdir / "selection.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sft_then_dpo_checkpoints_are_saved(demo_run):
    workdir, _, _ = demo_run
    assert (workdir / "outputs" / "exaone-lora" / "adapter_model.safetensors").is_file()
    assert (workdir / "outputs" / "exaone-lora" / "merged" / "config.json").is_file()
    dpo = workdir / "outputs" / "exaone-dpo"
    assert (dpo / "adapter_model.safetensors").is_file()
    base = json.loads((dpo / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base) == (workdir / "outputs" / "exaone-lora" / "merged").resolve()  # DPO from the SFT model


def test_candidates_and_dpo_pairs_are_real(demo_run):
    workdir, _, _ = demo_run
    train_ids = [item["id"] for item in load_json(TRAIN)]
    candidates = read_jsonl(workdir / "candidates" / "train_sft.jsonl")
    assert sorted(row["id"] for row in candidates) == sorted(train_ids)
    assert all(len(row["candidates"]) == 4 for row in candidates)
    pairs = read_jsonl(workdir / "data" / "dpo" / "train.jsonl")
    assert pairs and all(row["id"] in train_ids for row in pairs)
    references = {item["id"]: item["output"] for item in load_json(TRAIN)}
    for row in pairs:  # ref-vs-worst: the reference is chosen, a sampled candidate rejected
        assert row["chosen"] == {"role": "assistant", "content": references[row["id"]]}
        assert row["rejected"]["content"] in {text.strip() for text in
                                              next(c for c in candidates if c["id"] == row["id"])["candidates"]}
        assert row["score_chosen"] > row["score_rejected"]


def test_submissions_and_reports(demo_run):
    workdir, _, _ = demo_run
    dev = load_json(DEV)
    for name in ("dev_sft", "dev_dpo", "dev_rerank"):
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
    dpo_training = next(row for row in table if row.startswith("| DPO (axolotl)"))
    assert "reward accuracy" in dpo_training and "margin" in dpo_training, dpo_training
    sft, dpo = (load_json(workdir / "results" / f"dev_{name}.json") for name in ("sft", "dpo"))
    changed = sum(a["output"] != b["output"] for a, b in zip(sft, dpo))
    assert f"{changed}/{len(dev_ids := [item['id'] for item in sft])} dev summaries differ from SFT's" in next(
        row for row in table if row.startswith("| score dev (DPO)")) and len(dev_ids) == len(load_json(DEV))
    report = workdir / "compare"
    data = load_json(report / "compare.json")
    assert [system["name"] for system in data["systems"]] == ["SFT", "DPO", "MBR"] and data["n"] == len(dev_ids)
    assert {(pair["first"], pair["second"]) for pair in data["pairs"]} == {("SFT", "DPO"), ("SFT", "MBR"),
                                                                          ("DPO", "MBR")}
    assert (report / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    compared = next(row for row in table if row.startswith("| compare dev"))
    dpo_pair = next(pair for pair in data["pairs"] if pair["second"] == "DPO" and pair["metric"] == "rouge1")
    assert f"DPO {dpo_pair['difference']:+.2f} [{dpo_pair['low']:+.2f}, {dpo_pair['high']:+.2f}] {dpo_pair['verdict']}" in compared


def test_rerun_skips_every_up_to_date_stage(demo_run):
    _, output, rerun = demo_run
    assert rerun.count("up to date, skipped") == STAGES
    scores = [row.split("|")[4] for row in table_of(output)[2:-1]]
    assert [row.split("|")[4] for row in table_of(rerun)[2:-1]] == scores  # skipped stages still show scores
