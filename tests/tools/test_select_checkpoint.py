"""`tools select-checkpoint`: every checkpoint of a run generated, scored and compared; the winner by the task
metric (earliest on a tie) behind RUN/best; resumable; a table, JSON and a plot."""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch

from helpers import DEV, TEST, count_calls, load_json, opened_files, random_lora, tools_cli
from training.selection import Row, find_checkpoints, winner

COMMON = ["--no-progress", "--threads", "1", "--max-new-tokens", "8"]


def trainer_state(step: int, epoch: float, eval_loss: float | None) -> dict:
    """A `trainer_state.json` as the Hugging Face trainer writes it (the fields selection reads, and more)."""
    history = [{"epoch": epoch, "step": step, "loss": 2.0, "learning_rate": 1e-4}]
    if eval_loss is not None:
        history.append({"epoch": epoch, "step": step, "eval_loss": eval_loss, "eval_runtime": 0.1})
    return {"global_step": step, "epoch": epoch, "max_steps": 6, "log_history": history, "best_metric": None}


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory):
    """An Axolotl-like LoRA output_dir: checkpoint-2/4/6 (adapters that differ) and the final adapter."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("lora-run") / "exaone-lora"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    for step, scale, loss in ((2, 0.2, 3.0), (4, 0.6, 2.5), (6, 1.0, 2.6)):
        model = random_lora(tiny_model, seed=step, scale=scale)
        for folder in ([root / f"checkpoint-{step}"] + ([root] if step == 6 else [])):
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            if folder != root:
                (folder / "trainer_state.json").write_text(json.dumps(trainer_state(step, step / 2, loss)))
    return root


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_selects_by_the_task_score_and_matches_infer_plus_score(lora_run, tmp_path):
    result = tools_cli("select-checkpoint", "--run", lora_run, "--input", DEV, *COMMON)
    assert result.exit_code == 0, result.output
    selection = json.loads((lora_run / "selection.json").read_text(encoding="utf-8"))
    rows = selection["rows"]
    assert [row["name"] for row in rows] == ["checkpoint-2", "checkpoint-4", "checkpoint-6", "final"]
    assert [row["step"] for row in rows] == [2, 4, 6, 6]
    assert [row["eval_loss"] for row in rows] == [3.0, 2.5, 2.6, None]
    assert [row["epoch"] for row in rows] == [1.0, 2.0, 3.0, 3.0]
    for row in rows:  # each row is what `tools infer` + `tools score` give for that checkpoint alone
        alone, report = tmp_path / f"{row['name']}.json", tmp_path / f"{row['name']}.score.json"
        assert tools_cli("infer", "--ckpt", row["path"], "--input", DEV, "--output", alone, *COMMON).exit_code == 0
        assert tools_cli("score", "--predictions", alone, "--input", DEV, "--metrics", "rouge1",
                   "--report", report).exit_code == 0
        assert load_json(lora_run / row["predictions"]) == load_json(alone)
        scored = load_json(report)
        assert {key: row["metrics"][key] for key in ("rouge1", "rouge2", "rougeL")} == {
            key: scored[key] for key in ("rouge1", "rouge2", "rougeL")}
        outputs = [item["output"] for item in load_json(alone)]
        assert row["mean_summary_chars"] == pytest.approx(sum(map(len, outputs)) / len(outputs))
    scores = [row["metrics"]["rouge1"] for row in rows]
    best = rows[scores.index(max(scores))]  # index() finds the earliest of equal scores
    assert selection["best"] == best["name"]
    assert (lora_run / "best").resolve() == (lora_run / best["path"]).resolve()
    table = (lora_run / "selection.md").read_text(encoding="utf-8")
    assert table.strip() in result.output and f"**{best['name']}** (best rouge1)" in table
    assert png_size(lora_run / "selection.png") == (800, 450)


def test_a_rerun_regenerates_only_what_is_missing(lora_run):
    assert tools_cli("select-checkpoint", "--run", lora_run, "--input", DEV, *COMMON).exit_code == 0
    before = load_json(lora_run / "selection.json")
    (lora_run / "selection" / "checkpoint-4.dev.json").unlink()
    result = tools_cli("select-checkpoint", "--run", lora_run, "--input", DEV, *COMMON)
    assert result.exit_code == 0, result.output
    assert result.output.count(": generating") == 1 and "checkpoint-4: generating 4 dev summaries" in result.output
    assert result.output.count("(predictions reused)") == 3
    assert load_json(lora_run / "selection.json") == before
    # Batching changes no output: other batches reuse every prediction.
    result = tools_cli("select-checkpoint", "--run", lora_run, "--input", DEV, *COMMON, "--max-batch-tokens", 300,
                       "--batch-size", 2)
    assert result.exit_code == 0 and result.output.count("(predictions reused)") == 4, result.output
    # Other decoding settings make every stored prediction stale.
    result = tools_cli("select-checkpoint", "--run", lora_run, "--input", DEV, *COMMON[:-1], "6")
    assert result.exit_code == 0 and result.output.count(": generating") == 4


def test_fresh_predictions_are_scored_as_generated_and_kept_ones_are_read_back(lora_run, tmp_path, monkeypatch):
    """Each checkpoint goes through the generation entry (generation.pipeline.Inference) once: resolved once — its
    record and its run share it —, its predictions' lock taken once, and generated there; kept ones are read back."""
    from generation.checkpoints import resolve_checkpoint
    from generation.sidecar import output_lock

    run = tmp_path / "run"
    shutil.copytree(lora_run, run, ignore=shutil.ignore_patterns("selection*", "best"))
    checkpoints = [run / "checkpoint-2", run / "checkpoint-4", run / "checkpoint-6", run]
    resolved, locked = count_calls(monkeypatch, resolve_checkpoint), count_calls(monkeypatch, output_lock)
    with opened_files() as opened:
        assert tools_cli("select-checkpoint", "--run", run, "--input", DEV, *COMMON).exit_code == 0
    assert not [path for path in opened if path.endswith(".dev.json")]  # written (temp file + rename), never read
    assert [args[0] for args in resolved] == checkpoints
    assert [args[0] for args in locked] == [run / "selection" / f"{name}.dev.json"
                                            for name in ("checkpoint-2", "checkpoint-4", "checkpoint-6", "final")]
    kept = run / "selection" / "checkpoint-2.dev.json"  # edited by hand: the reference summaries
    kept.write_text(json.dumps(load_json(DEV), ensure_ascii=False), encoding="utf-8")
    resolved.clear(), locked.clear()
    with opened_files() as opened:
        result = tools_cli("select-checkpoint", "--run", run, "--input", DEV, *COMMON)
    assert result.exit_code == 0 and str(kept) in opened
    assert [args[0] for args in resolved] == checkpoints and locked == []  # each record checked; nothing generated
    selection = load_json(run / "selection.json")
    assert selection["best"] == "checkpoint-2" and selection["rows"][0]["metrics"]["rouge1"] == 100.0


def test_full_weight_checkpoints(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    runs = tmp_path / "exaone-sft"
    for step in (1, 2, 3):
        shutil.copytree(tiny_model, runs / f"checkpoint-{step}")
        (runs / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(trainer_state(step, step, 1.0 / step)))
    shard = sorted((runs / "checkpoint-3").glob("*.safetensors"))[0]
    tensors = load_file(shard)
    torch.manual_seed(0)
    save_file({name: value + 0.5 * torch.randn_like(value) for name, value in tensors.items()}, shard,
              metadata={"format": "pt"})
    result = tools_cli("select-checkpoint", "--run", runs, "--input", DEV, *COMMON)
    assert result.exit_code == 0, result.output
    rows = load_json(runs / "selection.json")["rows"]
    assert [row["name"] for row in rows] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert rows[0]["metrics"] == rows[1]["metrics"]  # the same weights score the same …
    if rows[0]["metrics"]["rouge1"] >= rows[2]["metrics"]["rouge1"]:
        assert load_json(runs / "selection.json")["best"] == "checkpoint-1"  # … and the tie goes to the earliest


def test_ties_go_to_the_earliest_step():
    rows = [Row(name, name, step, None, None, {"rouge1": score}, 1.0, "") for name, step, score in
            (("checkpoint-1", 1, 10.0), ("checkpoint-2", 2, 12.0), ("checkpoint-3", 3, 12.0), ("final", 3, 12.0))]
    assert winner(rows, "rouge1").name == "checkpoint-2"


def test_mistakes_are_one_line_errors_naming_the_path(tmp_path, lora_run):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    for args, expected in [
        (["--run", empty, "--input", DEV], f"--run {empty}: no checkpoint-N folder and no final weights"),
        (["--run", tmp_path / "missing", "--input", DEV], f"--run {tmp_path / 'missing'}: no such directory"),
        (["--run", lora_run, "--input", TEST], "--input needs reference summaries"),
    ]:
        result = tools_cli("select-checkpoint", *args, *COMMON)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and expected in lines[0], result.output
    broken = tmp_path / "broken-run"
    shutil.copytree(lora_run / "checkpoint-2", broken / "checkpoint-2")
    (broken / "checkpoint-2" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    result = tools_cli("select-checkpoint", "--run", broken, "--input", DEV, *COMMON)
    assert result.exit_code == 1
    assert f"Error: cannot load model '{broken / 'checkpoint-2'}': " in result.output.strip().splitlines()[-1]
    assert "Traceback" not in result.output


def test_find_checkpoints_orders_by_step(tmp_path):
    for name in ("checkpoint-10", "checkpoint-9", "checkpoint-100", "checkpoint-x", "not-a-checkpoint"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_model.safetensors").write_bytes(b"")
    (tmp_path / "checkpoint-50").mkdir()  # no weights (an interrupted save): not a candidate
    assert [candidate.name for candidate in find_checkpoints(tmp_path)] == ["checkpoint-9", "checkpoint-10",
                                                                            "checkpoint-100"]
