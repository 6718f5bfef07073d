"""The demo pipeline (`tools demo`, what `make demo` runs): the whole chain on CPU, for real, with a tiny model.

Stages — each one the command a GPU user runs on the real model, with only the recipe overlay and the
paths changed:

 1. a tiny random EXAONE 3.0 checkpoint in EXAONE's own hub layout, as a download from the hub is
    (`tools build-tiny-model --layout exaone`);
 2. its conversion to the Llama layout (`tools convert-exaone`), the GPU user's first step; every later
    stage uses the converted directory;
 3. SFT data from the bundled sample files, fitted to the recipe (`tools build-sft-data --recipe`);
 4. LoRA SFT with `recipes/exaone_lora.yml` through the real Axolotl (CPU overlay), a checkpoint (and a
    dev loss) every few steps;
 5. `tools select-checkpoint`: every checkpoint generates and scores dev; the best by ROUGE-1 becomes
    `outputs/exaone-lora/best` (its table and plot are copied to the work dir), and is merged;
 6. `tools infer` on dev → `tools score`;
 7. `tools infer --num-candidates` on train → `tools build-dpo-data` → DPO with
    `recipes/exaone_dpo.yml` (CPU overlay) from the selected checkpoint → `tools infer` + `tools score` on dev;
 8. `tools infer --num-candidates` on dev → `tools rerank` → `tools score`;
 9. `tools compare` of SFT, DPO and the MBR rerank on dev: sign-flip test, bootstrap intervals and the report folder
    ``compare/`` (``report.html``);
10. one table: stage, time, output, score — and what DPO changed: its reward accuracy and margin (from the
    DPO run's ``trainer_state.json``) and how many dev summaries differ from the SFT model's.

A re-run skips stages whose outputs are newer than their inputs. The tiny model's scores are
meaningless: the point is that every stage runs.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Callable

from common.checkout import RECIPES, require
from common.checkpoint_files import ADAPTER_WEIGHTS, CONFIG, SAFETENSORS_INDEX
from common.env import offline_env
from common.io import write_text
from dataset_builders.nikl import SPLITS, sample_files
from workflow.stages import Pipeline, Stage, run_program

# Runs one `tools` command (its arguments, without the leading "tools"); raises StageFailed on error.
ToolsRunner = Callable[..., None]


def axolotl(*args: object) -> None:
    """Run the Axolotl CLI of this environment (the same one the README's GPU commands use)."""
    run_program(Path(sys.executable).parent / "axolotl", *args, env=offline_env())


def axolotl_preprocess_and_train(config: Path) -> None:
    """`axolotl preprocess CONFIG` + `axolotl train CONFIG --launcher python`, in one process
    (workflow/axolotl_cli.py: Axolotl's start-up paid once)."""
    run_program(sys.executable, "-m", "workflow.axolotl_cli", config, env=offline_env())


def score_of(report: Path) -> str:
    data = json.loads(report.read_text(encoding="utf-8"))
    official = data.get("official")
    text = f"ROUGE-1 {data['rouge1']:.2f}"
    return text + (f", official {official:.2f}" if official is not None else "")


def last_trainer_state(run: Path) -> Path | None:
    """``RUN/trainer_state.json``, else the one of the highest ``checkpoint-N``."""
    if (run / "trainer_state.json").is_file():
        return run / "trainer_state.json"
    found = [(int(match.group(1)), path) for path in run.glob("checkpoint-*/trainer_state.json")
             if (match := re.fullmatch(r"checkpoint-(\d+)", path.parent.name))]
    return max(found)[1] if found else None


def dpo_rewards_of(run: Path) -> str:
    """What DPO learnt, from the last ``trainer_state.json`` of ``run``: TRL's reward accuracy (the share of
    pairs whose chosen summary the policy, relative to the reference model, prefers over the rejected one)
    and reward margin, on the held-out pairs when there are some (``eval_rewards/…``), else at the last
    logged training step (``rewards/…``, one step's batch)."""
    state_file = last_trainer_state(run)
    if state_file is None:
        return "no trainer_state.json"
    history = json.loads(state_file.read_text(encoding="utf-8")).get("log_history", [])
    for prefix, where in (("eval_rewards/", "held-out pairs"), ("rewards/", "training batch")):
        logged = [entry for entry in history if f"{prefix}accuracies" in entry and f"{prefix}margins" in entry]
        if logged:
            last = logged[-1]
            return (f"reward accuracy {last[prefix + 'accuracies']:.2f}, margin {last[prefix + 'margins']:+.3g} "
                    f"({where}, step {last.get('step', '?')})")
    return "no reward metrics logged"


def changed_share(before: Path, after: Path) -> str:
    """How many summaries of ``after`` differ from those of ``before`` (NIKL files, matched by id)."""
    old = {item["id"]: item["output"] for item in json.loads(before.read_text(encoding="utf-8"))}
    new = {item["id"]: item["output"] for item in json.loads(after.read_text(encoding="utf-8"))}
    changed = sum(1 for key, text in new.items() if old.get(key) != text)
    return f"{changed}/{len(new)} dev summaries differ from SFT's"


def compared_of(report: Path) -> str:
    """ROUGE-1 against the first system: each difference with its interval and verdict."""
    data = json.loads(report.read_text(encoding="utf-8"))
    first = data["systems"][0]["name"]
    pairs = [pair for pair in data["pairs"] if pair["metric"] == "rouge1" and pair["first"] == first]
    return f"ROUGE-1 vs {first}: " + "; ".join(
        f"{pair['second']} {pair['difference']:+.2f} [{pair['low']:+.2f}, {pair['high']:+.2f}] {pair['verdict']}"
        for pair in pairs)


def selected_of(selection: Path) -> str:
    data = json.loads(selection.read_text(encoding="utf-8"))
    best = next(row for row in data["rows"] if row["name"] == data["best"])
    tied = data.get("within_noise", [])
    noise = f"; within noise of it: {', '.join(tied)}" if tied else "; the others are worse beyond noise"
    return f"selected {best['name']} (ROUGE-1 {best['metrics']['rouge1']:.2f}){noise}"


def record_settings(path: Path, settings: dict[str, object]) -> Path:
    """Write the run's settings, touching the file only when they change: stages that take it as an
    input re-run after ``--fast``/``--full`` is switched, and stay skipped otherwise."""
    text = json.dumps(settings, sort_keys=True) + "\n"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)
    return path


def build_pipeline(workdir: Path, *, fast: bool, run_tools: ToolsRunner) -> Pipeline:
    """The demo's stages in ``workdir``; ``run_tools`` runs a `tools` command (the click layer passes it in)."""
    require(RECIPES, "recipes/")
    w = workdir
    sample = dict(zip(SPLITS, sample_files()))
    hub_model = w / "models" / "tiny-exaone"  # EXAONE's own layout, what the hub serves
    model = w / "models" / "tiny-exaone-llama"  # converted: what every recipe and command loads
    sft_data = {split: w / "data" / "sft" / f"{split}.jsonl" for split in ("train", "dev")}
    sft_config, dpo_config = w / "configs" / "exaone_lora.cpu.yml", w / "configs" / "exaone_dpo.cpu.yml"
    sft_dir, dpo_dir = w / "outputs" / "exaone-lora", w / "outputs" / "exaone-dpo"
    merged = sft_dir / "merged"  # where `axolotl merge-lora` writes
    dpo_adapter = dpo_dir / ADAPTER_WEIGHTS[0]  # recipes/exaone_dpo.yml is LoRA DPO
    results, candidates = w / "results", w / "candidates"
    dpo_data = w / "data" / "dpo" / "train.jsonl"
    steps, save_every = (3, 1) if fast else (8, 2)  # ≥ 3 checkpoints to choose from
    generation = ["--max-new-tokens", 24 if fast else 64, "--batch-size", 8]
    sampling = ["--num-candidates", 4, "--temperature", 1.0, "--top-p", 0.95, "--seed", 0]
    # Every stage from SFT on depends (directly or through its inputs) on these settings.
    settings = record_settings(w / "demo_settings.json", {"steps": steps, "save_every": save_every,
                                                           "generation": generation, "sampling": sampling})

    pipeline = Pipeline()
    # The sharded checkpoint's index is an output too: an older workdir has a single-file Llama model here.
    pipeline.add(Stage("tiny model (EXAONE layout)",
                       lambda: run_tools("build-tiny-model", "--layout", "exaone", "--output-dir", hub_model),
                       outputs=[hub_model / CONFIG, hub_model / SAFETENSORS_INDEX]))
    # --force: the stage only re-runs when its output is out of date, and then replaces it.
    pipeline.add(Stage("convert to Llama layout",
                       lambda: run_tools("convert-exaone", "--model", hub_model, "--output-dir", model, "--force"),
                       outputs=[model / CONFIG], inputs=[hub_model / CONFIG]))

    def build_sft_data() -> None:
        for split, path in sft_data.items():
            run_tools("build-sft-data", "--input", sample[split], "--output", path,
                      "--recipe", RECIPES / "exaone_lora.yml", "--tokenizer", model)

    pipeline.add(Stage("SFT data", build_sft_data, outputs=list(sft_data.values()),
                       inputs=[*sample.values(), model / CONFIG]))

    def train(recipe: Path, config: Path, base: Path, train_data: Path, eval_data: Path | None, out: Path,
              every: int | None = None) -> None:
        overlay = ["cpu-overlay", recipe, "--base-model", base, "--train-data", train_data,
                   "--output-dir", out, "--max-steps", steps, "--config-out", config]
        overlay += ["--save-every", every] if every else []
        run_tools(*overlay, *(["--eval-data", eval_data] if eval_data else []))
        axolotl_preprocess_and_train(config)

    pipeline.add(Stage(
        "SFT (LoRA, axolotl)",
        lambda: train(RECIPES / "exaone_lora.yml", sft_config, model, sft_data["train"], sft_data["dev"], sft_dir,
                      save_every),
        outputs=[sft_dir / ADAPTER_WEIGHTS[0]],
        inputs=[model / CONFIG, *sft_data.values(), RECIPES / "exaone_lora.yml", settings],
    ))

    selection = sft_dir / "selection.json"

    def select() -> None:
        run_tools("select-checkpoint", "--run", sft_dir, "--input", sample["dev"], *generation)
        for name in ("selection.md", "selection.png"):  # the table and the plot, beside the demo's own table
            shutil.copyfile(sft_dir / name, w / name)

    pipeline.add(Stage("select checkpoint (ROUGE-1 on dev)", select,
                       outputs=[selection, w / "selection.md", w / "selection.png"],
                       inputs=[sft_dir / ADAPTER_WEIGHTS[0], sample["dev"]],
                       score=lambda: selected_of(selection)))
    pipeline.add(Stage("merge selected LoRA (axolotl)",
                       lambda: axolotl("merge-lora", sft_config, "--lora-model-dir", sft_dir / "best"),
                       outputs=[merged / CONFIG], inputs=[selection]))

    def infer_and_score(label: str, ckpt: Path, marker: Path, tag: str,
                        note: Callable[[], str] | None = None) -> Path:
        prediction, report = results / f"dev_{tag}.json", results / f"dev_{tag}.score.json"
        pipeline.add(Stage(f"infer dev ({label})",
                           lambda: run_tools("infer", "--ckpt", ckpt, "--input", sample["dev"], "--output", prediction, *generation),
                           outputs=[prediction], inputs=[marker, sample["dev"]]))
        add_score(f"score dev ({label})", prediction, report, note)
        return prediction

    def add_score(name: str, prediction: Path, report: Path, note: Callable[[], str] | None = None) -> None:
        pipeline.add(Stage(name,
                           lambda: run_tools("score", "--predictions", prediction, "--input", sample["dev"],
                                             "--metrics", "rouge1", "--report", report),
                           outputs=[report], inputs=[prediction],
                           score=lambda: score_of(report) + (f"; {note()}" if note else "")))

    sft_dev = infer_and_score("SFT", merged, merged / CONFIG, "sft")

    train_candidates = candidates / "train_sft.jsonl"
    pipeline.add(Stage("sample train candidates (SFT)",
                       lambda: run_tools("infer", "--ckpt", merged, "--input", sample["train"],
                                         "--output", train_candidates, *generation, *sampling),
                       outputs=[train_candidates], inputs=[merged / CONFIG, sample["train"]]))
    pipeline.add(Stage("DPO data",
                       lambda: run_tools("build-dpo-data", "--input", sample["train"], "--candidates", train_candidates,
                                         "--output", dpo_data, "--strategy", "ref-vs-worst",
                                         "--recipe", RECIPES / "exaone_dpo.yml", "--tokenizer", merged),
                       outputs=[dpo_data], inputs=[train_candidates, sample["train"]]))
    pipeline.add(Stage(
        "DPO (axolotl)",
        lambda: train(RECIPES / "exaone_dpo.yml", dpo_config, merged, dpo_data, None, dpo_dir),
        outputs=[dpo_adapter],
        inputs=[dpo_data, merged / CONFIG, RECIPES / "exaone_dpo.yml"],
        score=lambda: dpo_rewards_of(dpo_dir),
    ))
    # The LoRA adapter is loaded on its (merged SFT) base.
    dpo_dev = infer_and_score("DPO", dpo_dir, dpo_adapter, "dpo", note=lambda: changed_share(sft_dev, dpo_dev))

    dev_candidates = candidates / "dev_dpo.jsonl"
    reranked = results / "dev_rerank.json"
    pipeline.add(Stage("sample dev candidates (DPO)",
                       lambda: run_tools("infer", "--ckpt", dpo_dir, "--input", sample["dev"],
                                         "--output", dev_candidates, *generation, *sampling),
                       outputs=[dev_candidates], inputs=[dpo_adapter, sample["dev"]]))
    pipeline.add(Stage("rerank dev (MBR)",
                       lambda: run_tools("rerank", "--candidates", dev_candidates, "--input", sample["dev"],
                                         "--output", reranked),
                       outputs=[reranked], inputs=[dev_candidates]))
    add_score("score dev (MBR rerank)", reranked, results / "dev_rerank.score.json")

    report = w / "compare"
    pipeline.add(Stage("compare dev (SFT vs DPO vs MBR)",
                       lambda: run_tools("compare", "--input", sample["dev"], sft_dev, dpo_dev, reranked,
                                         "--name", "SFT", "--name", "DPO", "--name", "MBR", "--report", report),
                       outputs=[report / "report.html", report / "compare.json", report / "compare.md"],
                       inputs=[sft_dev, dpo_dev, reranked], score=lambda: compared_of(report / "compare.json")))
    return pipeline
