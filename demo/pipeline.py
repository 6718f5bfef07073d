"""The demo pipeline (`tools demo`, what `make demo` runs): the whole chain on CPU, for real, on a task a tiny
model can master — so every stage's number means something.

Stages — each one the command a GPU user runs on the real model, with only the recipe overlay, its named
overrides and the paths changed:

 1. the learnable task (`tools build-learnable-task`, :mod:`dataset_builders.learnable`): NIKL-format
    dialogues whose reference summary only reading the dialogue can produce; dev pairs speakers and topics
    with places as train never does;
 2. a tiny random EXAONE 3.0 checkpoint in EXAONE's own hub layout, its byte-level BPE tokenizer trained on
    the task's train split (`tools build-tiny-model --layout exaone`), and its conversion to the Llama
    layout (`tools convert-exaone`) — every later stage uses the converted directory;
 3. SFT data fitted to `recipes/exaone_sft.yml` (`tools build-sft-data --recipe`), checked by
    `tools check-data` before any training;
 4. the base model on dev (`tools infer` → `tools score`): it cannot do the task yet;
 5. full SFT from scratch with `recipes/exaone_sft.yml` through the real Axolotl (CPU overlay plus the
    overrides a 600k-parameter model trained from random weights needs, listed in the table), a checkpoint
    every few steps; `tools select-checkpoint` picks the best by dev ROUGE-1; `tools infer` + `tools score`;
 6. DPO from a deliberately under-trained SFT checkpoint (the first one): candidates sampled there on train
    and on dev, pairs ranked by ROUGE-1 (`tools build-dpo-data`; the dev pairs are DPO's held-out set),
    `tools check-data` on the pairs, LoRA DPO with `recipes/exaone_dpo.yml` → infer + score;
 7. candidates from the DPO model → `tools rerank` (MBR) → score; `tools compare` of SFT, the DPO start,
    DPO and MBR (sign-flip test, bootstrap intervals, ``compare/report.html``);
 8. the learning lines (:mod:`demo.learning_checks`), each passing or failing, and ``demo_results.json``
    with the dev ROUGE-1 of every stage.

A re-run skips stages whose outputs are newer than their inputs. ``--fast`` runs the same stages at a size
that only shows they run (the test suite's variant): it learns nothing and checks no learning line.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from common.checkout import RECIPES, require
from common.checkpoint_files import ADAPTER_WEIGHTS, CONFIG, SAFETENSORS_INDEX
from common.env import offline_env
from common.io import write_text
from dataset_builders.learnable import SPLIT_FILE
from demo.learning_checks import LearningResults
from demo.stages import Pipeline, Stage, run_program

# Runs one `tools` command (its arguments, without the leading "tools"); raises StageFailed on error.
ToolsRunner = Callable[..., None]
SFT_RECIPE, DPO_RECIPE = "exaone_sft.yml", "exaone_dpo.yml"


@dataclass(frozen=True)
class DemoSize:
    """How much the demo does: the task, the model, the steps (a budget in steps, not seconds) and decoding."""

    task: dict[str, int]  # dialogues per split
    hidden_size: int
    sft_steps: int
    save_every: int  # ≤ 4 checkpoints: Axolotl keeps 4 (save_total_limit), and the first is DPO's start
    dpo_steps: int
    max_new_tokens: int
    # What differs from the GPU recipes, by name (`tools cpu-overlay --set`), with the reason for each.
    sft_overrides: dict[str, Any] = field(default_factory=dict)
    dpo_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def dpo_start(self) -> str:
        return f"checkpoint-{self.save_every}"


# SFT from random weights, not from a pretrained 7.8B model: a rate 100× the recipe's, 16 dialogues a step
# unpacked (on a CPU, attention over a 4096-token packed row costs far more than the padding it saves), and no
# gradient checkpointing (it only recomputes what 600k parameters can keep). DPO: a rate at which the adapter of
# a model this small moves in 40 steps (there, plain DPO made the summaries worse: docs/demo.md), 8 pairs a step
# as the recipe's accumulation gives.
SFT_OVERRIDES = {"learning_rate": 2e-3, "micro_batch_size": 16, "sample_packing": False,
                 "gradient_checkpointing": False}
DPO_OVERRIDES = {"learning_rate": 2e-3, "micro_batch_size": 8, "gradient_checkpointing": False}
FULL = DemoSize(task={"train": 1000, "dev": 48, "test": 48}, hidden_size=128, sft_steps=300, save_every=100,
                dpo_steps=40, max_new_tokens=48, sft_overrides=SFT_OVERRIDES, dpo_overrides=DPO_OVERRIDES)
FAST = DemoSize(task={"train": 32, "dev": 8, "test": 8}, hidden_size=128, sft_steps=3, save_every=1,
                dpo_steps=2, max_new_tokens=16, sft_overrides=SFT_OVERRIDES, dpo_overrides=DPO_OVERRIDES)
SAMPLING = ["--temperature", 1.0, "--top-p", 0.95, "--seed", 0]
# Candidates per dialogue: on train 2 are enough for ref-vs-worst pairs (the reference against the worse sample)
# and halve the demo's longest generation; on dev (few dialogues) 4, for the MBR rerank and the held-out pairs.
CANDIDATES = {"train": 2, "dev": 4}


def axolotl_preprocess_and_train(config: Path) -> None:
    """`axolotl preprocess CONFIG` + `axolotl train CONFIG --launcher python`, in one process
    (training/axolotl_cli.py: Axolotl's start-up paid once)."""
    run_program(sys.executable, "-m", "training.axolotl_cli", config, env=offline_env())


def score_of(report: Path) -> str:
    data = json.loads(report.read_text(encoding="utf-8"))
    official = data.get("official")
    text = f"ROUGE-1 {data['rouge1']:.2f}"
    return text + (f", official {official:.2f}" if official is not None else "")


def rouge1_of(report: Path) -> float:
    return float(json.loads(report.read_text(encoding="utf-8"))["rouge1"])


def last_trainer_state(run: Path) -> Path | None:
    """``RUN/trainer_state.json``, else the one of the highest ``checkpoint-N``."""
    if (run / "trainer_state.json").is_file():
        return run / "trainer_state.json"
    found = [(int(match.group(1)), path) for path in run.glob("checkpoint-*/trainer_state.json")
             if (match := re.fullmatch(r"checkpoint-(\d+)", path.parent.name))]
    return max(found)[1] if found else None


def log_history(run: Path) -> list[dict[str, Any]]:
    state_file = last_trainer_state(run)
    return json.loads(state_file.read_text(encoding="utf-8")).get("log_history", []) if state_file else []


def dpo_accuracy_history(run: Path) -> list[tuple[int, float]]:
    """(step, TRL's reward accuracy on the held-out pairs) at every evaluation of the DPO run."""
    return [(int(entry.get("step", 0)), float(entry["eval_rewards/accuracies"]))
            for entry in log_history(run) if "eval_rewards/accuracies" in entry]


def dpo_rewards_of(run: Path) -> str:
    """What DPO learnt, from the last ``trainer_state.json`` of ``run``: TRL's reward accuracy (the share of
    pairs whose chosen summary the policy, relative to the reference model, prefers over the rejected one)
    and reward margin, on the held-out pairs when there are some (``eval_rewards/…``), else at the last
    logged training step (``rewards/…``, one step's batch)."""
    history = log_history(run)
    if not history:
        return "no trainer_state.json"
    for prefix, where in (("eval_rewards/", "held-out pairs"), ("rewards/", "training batch")):
        logged = [entry for entry in history if f"{prefix}accuracies" in entry and f"{prefix}margins" in entry]
        if logged:
            first, last = logged[0], logged[-1]
            return (f"reward accuracy {first[prefix + 'accuracies']:.2f} → {last[prefix + 'accuracies']:.2f}, "
                    f"margin {last[prefix + 'margins']:+.3g} ({where}, steps {first.get('step', '?')}–"
                    f"{last.get('step', '?')})")
    return "no reward metrics logged"


def eval_loss_of(run: Path) -> str:
    losses = [(entry.get("step"), entry["eval_loss"]) for entry in log_history(run) if "eval_loss" in entry]
    return f"dev loss {losses[0][1]:.3f} → {losses[-1][1]:.3f}" if losses else "no dev loss logged"


def changed_share(before: Path, after: Path) -> str:
    """How many summaries of ``after`` differ from those of ``before`` (NIKL files, matched by id)."""
    old = {item["id"]: item["output"] for item in json.loads(before.read_text(encoding="utf-8"))}
    new = {item["id"]: item["output"] for item in json.loads(after.read_text(encoding="utf-8"))}
    changed = sum(1 for key, text in new.items() if old.get(key) != text)
    return f"{changed}/{len(new)} dev summaries differ from the DPO start's"


def compared_pairs(report: Path, first: str) -> list[dict[str, Any]]:
    data = json.loads(report.read_text(encoding="utf-8"))
    return [pair for pair in data["pairs"] if pair["metric"] == "rouge1" and pair["first"] == first]


def compared_of(report: Path) -> str:
    """ROUGE-1 against the first system: each difference with its interval and verdict."""
    first = json.loads(report.read_text(encoding="utf-8"))["systems"][0]["name"]
    return f"ROUGE-1 vs {first}: " + "; ".join(
        f"{pair['second']} {pair['difference']:+.2f} [{pair['low']:+.2f}, {pair['high']:+.2f}] {pair['verdict']}"
        for pair in compared_pairs(report, first))


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


def overrides_text(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in overrides.items())


def set_options(overrides: dict[str, Any]) -> list[str]:
    """``tools cpu-overlay --set KEY=VALUE`` options for ``overrides`` (JSON values are YAML: ``false``, ``0.002``)."""
    return [part for key, value in overrides.items() for part in ("--set", f"{key}={json.dumps(value)}")]


def stopped_count(predictions: Path, tokenizer_dir: Path, max_new_tokens: int) -> tuple[int, int]:
    """(summaries that ended at the end-of-turn token, all summaries) of a predictions file. A summary that
    ran to ``max_new_tokens`` has (re-encoded) that many tokens; the learnable task's summaries have at most
    ~35, so one within :data:`CUT_MARGIN` tokens of the limit counts as cut off."""
    from common.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(tokenizer_dir))
    outputs = [item["output"] for item in json.loads(predictions.read_text(encoding="utf-8"))]
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in outputs]
    return sum(length < max_new_tokens - CUT_MARGIN for length in lengths), len(outputs)


CUT_MARGIN = 4  # decoding drops special tokens and collapses spaces: a cut summary can re-encode a little shorter


def wording_only_rouge1(train: Path, dev: Path, seed: int = 0) -> float:
    """Dev ROUGE-1 of a model that writes the summary's wording with the wrong names: each dev dialogue gets a
    random train dialogue's reference summary."""
    from eval.rouge import corpus_mean, rouge_f

    references = [item["output"] for item in json.loads(dev.read_text(encoding="utf-8"))]
    pool = [item["output"] for item in json.loads(train.read_text(encoding="utf-8"))]
    rng = random.Random(seed)
    return 100 * corpus_mean(rouge_f([rng.choice(pool) for _ in references], references, ("rouge1",))["rouge1"])


@dataclass(frozen=True)
class DemoPaths:
    """Where each stage writes, under the work directory."""

    root: Path

    @property
    def task(self) -> dict[str, Path]:
        return {split: self.root / "data" / "learnable" / SPLIT_FILE.format(split=split)
                for split in ("train", "dev", "test")}

    @property
    def hub_model(self) -> Path:  # EXAONE's own layout, what the hub serves
        return self.root / "models" / "tiny-exaone"

    @property
    def model(self) -> Path:  # converted: what every recipe and command loads
        return self.root / "models" / "tiny-exaone-llama"

    @property
    def sft_data(self) -> dict[str, Path]:
        return {split: self.root / "data" / "sft" / f"{split}.jsonl" for split in ("train", "dev")}

    @property
    def dpo_data(self) -> dict[str, Path]:
        return {split: self.root / "data" / "dpo" / f"{split}.jsonl" for split in ("train", "dev")}

    @property
    def sft_run(self) -> Path:
        return self.root / "outputs" / "exaone-sft"

    @property
    def dpo_run(self) -> Path:
        return self.root / "outputs" / "exaone-dpo"

    def config(self, recipe: str) -> Path:
        return self.root / "configs" / recipe.replace(".yml", ".cpu.yml")

    def prediction(self, tag: str) -> Path:
        return self.root / "results" / f"dev_{tag}.json"

    def report(self, tag: str) -> Path:
        return self.root / "results" / f"dev_{tag}.score.json"

    def candidates(self, tag: str) -> Path:
        return self.root / "candidates" / f"{tag}.jsonl"


def build_pipeline(workdir: Path, *, fast: bool, run_tools: ToolsRunner) -> Pipeline:
    """The demo's stages in ``workdir``; ``run_tools`` runs a `tools` command (the click layer passes it in)."""
    require(RECIPES, "recipes/")
    size = FAST if fast else FULL
    at = DemoPaths(workdir)
    task, model = at.task, at.model
    sft_recipe, dpo_recipe = RECIPES / SFT_RECIPE, RECIPES / DPO_RECIPE
    dpo_start = at.sft_run / size.dpo_start  # deliberately under-trained: the first checkpoint
    dpo_adapter = at.dpo_run / ADAPTER_WEIGHTS[0]  # recipes/exaone_dpo.yml is LoRA DPO
    generation = ["--max-new-tokens", size.max_new_tokens]
    # Every stage depends (directly or through its inputs) on these settings.
    settings = record_settings(workdir / "demo_settings.json", {
        "size": {key: value for key, value in size.__dict__.items()}, "sampling": SAMPLING, "candidates": CANDIDATES})

    pipeline = Pipeline()
    pipeline.add(Stage("learnable task",
                       lambda: run_tools("build-learnable-task", "--output-dir", task["train"].parent,
                                         *[part for split, n in size.task.items() for part in (f"--{split}", n)]),
                       outputs=list(task.values()), inputs=[settings]))
    # The sharded checkpoint's index is an output too: an older workdir has a single-file Llama model here.
    pipeline.add(Stage("tiny model (EXAONE layout)",
                       lambda: run_tools("build-tiny-model", "--layout", "exaone", "--output-dir", at.hub_model,
                                         "--input", task["train"], "--hidden-size", size.hidden_size),
                       outputs=[at.hub_model / CONFIG, at.hub_model / SAFETENSORS_INDEX], inputs=[task["train"]]))
    # --force: the stage only re-runs when its output is out of date, and then replaces it.
    pipeline.add(Stage("convert to Llama layout",
                       lambda: run_tools("convert-exaone", "--model", at.hub_model, "--output-dir", model, "--force"),
                       outputs=[model / CONFIG], inputs=[at.hub_model / CONFIG]))

    def build_sft_data() -> None:
        for split, path in at.sft_data.items():
            run_tools("build-sft-data", "--input", task[split], "--output", path, "--recipe", sft_recipe,
                      "--tokenizer", model)

    pipeline.add(Stage("SFT data", build_sft_data, outputs=list(at.sft_data.values()),
                       inputs=[task["train"], task["dev"], model / CONFIG]))
    sft_checked = workdir / "data" / "sft" / "check-data.txt"
    pipeline.add(check_stage("check SFT data (tools check-data)", run_tools, sft_recipe, at.sft_data["train"],
                             model, sft_checked))

    def infer_and_score(label: str, tag: str, ckpt: Path, marker: Path, note: Callable[[], str] | None = None) -> None:
        prediction = at.prediction(tag)
        pipeline.add(Stage(f"infer dev ({label})",
                           lambda: run_tools("infer", "--ckpt", ckpt, "--input", task["dev"], "--output", prediction,
                                             *generation),
                           outputs=[prediction], inputs=[marker, task["dev"], settings]))
        add_score(f"score dev ({label})", prediction, at.report(tag), note)

    def add_score(name: str, prediction: Path, report: Path, note: Callable[[], str] | None = None) -> None:
        pipeline.add(Stage(name,
                           lambda: run_tools("score", "--predictions", prediction, "--input", task["dev"],
                                             "--metrics", "rouge1", "--report", report),
                           outputs=[report], inputs=[prediction],
                           score=lambda: score_of(report) + (f"; {note()}" if note else "")))

    infer_and_score("base model", "base", model, model / CONFIG)

    def train(recipe: Path, base: Path, data: dict[str, Path], run: Path, steps: int, overrides: dict[str, Any],
              every: int | None = None) -> None:
        config = at.config(recipe.name)
        overlay = ["cpu-overlay", recipe, "--base-model", base, "--train-data", data["train"],
                   "--eval-data", data["dev"], "--output-dir", run, "--max-steps", steps, "--config-out", config]
        overlay += ["--save-every", every] if every else []
        shutil.rmtree(run, ignore_errors=True)  # a re-run trains afresh: no checkpoint of another run stays
        run_tools(*overlay, *set_options(overrides))
        axolotl_preprocess_and_train(config)

    pipeline.add(Stage(
        f"SFT (recipes/{SFT_RECIPE}, axolotl)",
        lambda: train(sft_recipe, model, at.sft_data, at.sft_run, size.sft_steps, size.sft_overrides, size.save_every),
        outputs=[at.sft_run / CONFIG, dpo_start / CONFIG],
        inputs=[model / CONFIG, *at.sft_data.values(), sft_checked, sft_recipe, settings],
        score=lambda: (f"{size.sft_steps} steps; overrides: {overrides_text(size.sft_overrides)}; "
                       f"{eval_loss_of(at.sft_run)}"),
    ))
    selection = at.sft_run / "selection.json"

    def select() -> None:
        run_tools("select-checkpoint", "--run", at.sft_run, "--input", task["dev"], *generation)
        for name in ("selection.md", "selection.png"):  # the table and the plot, beside the demo's own table
            shutil.copyfile(at.sft_run / name, workdir / name)

    pipeline.add(Stage("select checkpoint (ROUGE-1 on dev)", select,
                       outputs=[selection, workdir / "selection.md", workdir / "selection.png"],
                       inputs=[at.sft_run / CONFIG, task["dev"]], score=lambda: selected_of(selection)))
    best = at.sft_run / "best"
    infer_and_score("SFT, selected", "sft", best, selection)

    def sample(label: str, tag: str, ckpt: Path, split: str, marker: Path) -> Path:
        output = at.candidates(tag)
        pipeline.add(Stage(f"sample {split} candidates ({label})",
                           lambda: run_tools("infer", "--ckpt", ckpt, "--input", task[split], "--output", output,
                                             *generation, "--num-candidates", CANDIDATES[split], *SAMPLING),
                           outputs=[output], inputs=[marker, task[split], settings]))
        return output

    start_label = f"DPO start: {size.dpo_start}"
    train_candidates = sample(start_label, "train_dpo_start", dpo_start, "train", dpo_start / CONFIG)
    dev_candidates = sample(start_label, "dev_dpo_start", dpo_start, "dev", dpo_start / CONFIG)

    def build_dpo_data() -> None:  # the dev pairs are DPO's held-out set: its reward accuracy is measured there
        for split, candidates in (("train", train_candidates), ("dev", dev_candidates)):
            run_tools("build-dpo-data", "--input", task[split], "--candidates", candidates,
                      "--output", at.dpo_data[split], "--strategy", DPO_STRATEGY, "--recipe", dpo_recipe,
                      "--tokenizer", dpo_start)

    pipeline.add(Stage(f"DPO data ({DPO_STRATEGY} by ROUGE-1)", build_dpo_data, outputs=list(at.dpo_data.values()),
                       inputs=[train_candidates, dev_candidates]))
    dpo_checked = workdir / "data" / "dpo" / "check-data.txt"
    pipeline.add(check_stage("check DPO data (tools check-data)", run_tools, dpo_recipe, at.dpo_data["train"],
                             dpo_start, dpo_checked))
    pipeline.add(Stage(
        f"DPO (recipes/{DPO_RECIPE}, axolotl)",
        lambda: train(dpo_recipe, dpo_start, at.dpo_data, at.dpo_run, size.dpo_steps, size.dpo_overrides),
        outputs=[dpo_adapter],
        inputs=[*at.dpo_data.values(), dpo_checked, dpo_start / CONFIG, dpo_recipe, settings],
        score=lambda: (f"from {size.dpo_start}, {size.dpo_steps} steps; overrides: "
                       f"{overrides_text(size.dpo_overrides)}; {dpo_rewards_of(at.dpo_run)}"),
    ))
    start_prediction = at.sft_run / "selection" / f"{size.dpo_start}.dev.json"  # select-checkpoint generated it
    # The LoRA adapter is loaded on its base, the DPO start checkpoint.
    infer_and_score("DPO", "dpo", at.dpo_run, dpo_adapter,
                    note=lambda: changed_share(start_prediction, at.prediction("dpo")))

    reranked = at.prediction("rerank")
    dpo_candidates = sample("DPO", "dev_dpo", at.dpo_run, "dev", dpo_adapter)
    pipeline.add(Stage("rerank dev (MBR)",
                       lambda: run_tools("rerank", "--candidates", dpo_candidates, "--input", task["dev"],
                                         "--output", reranked),
                       outputs=[reranked], inputs=[dpo_candidates]))
    add_score("score dev (MBR rerank)", reranked, at.report("rerank"))

    report = workdir / "compare"
    systems = {"SFT": at.prediction("sft"), "DPO-start": start_prediction, "DPO": at.prediction("dpo"),
               "MBR": reranked}
    pipeline.add(Stage("compare dev (SFT, DPO start, DPO, MBR)",
                       lambda: run_tools("compare", "--input", task["dev"], *systems.values(),
                                         *[part for name in systems for part in ("--name", name)], "--report", report),
                       outputs=[report / "report.html", report / "compare.json", report / "compare.md"],
                       inputs=list(systems.values()), score=lambda: compared_of(report / "compare.json")))
    return pipeline


DPO_STRATEGY = "ref-vs-worst"


def check_stage(name: str, run_tools: ToolsRunner, recipe: Path, rows: Path, tokenizer: Path, record: Path) -> Stage:
    """`tools check-data` on ``rows`` for ``recipe``; its output is kept in ``record`` (a failure stops the demo)."""
    def check() -> None:
        run_tools("check-data", "--recipe", recipe, "--input", rows, "--tokenizer", tokenizer)
        write_text(record, f"tools check-data --recipe {recipe} --input {rows} --tokenizer {tokenizer}: passed\n")

    return Stage(name, check, outputs=[record], inputs=[rows, recipe],
                 score=lambda: "loss on the answer and its end of turn only; prompt = tools infer's; fits sequence_len")


def collect_results(workdir: Path, *, fast: bool) -> LearningResults:
    """What the learning lines read, from the files the stages wrote."""
    size = FAST if fast else FULL
    at = DemoPaths(workdir)
    selection = json.loads((at.sft_run / "selection.json").read_text(encoding="utf-8"))
    rows = {row["name"]: row for row in selection["rows"]}
    rouge1 = {tag: rouge1_of(at.report(tag)) for tag in ("base", "sft", "dpo", "rerank")}
    rouge1["dpo_start"] = float(rows[size.dpo_start]["metrics"]["rouge1"])
    last = selection["rows"][-1]  # the final output, after every checkpoint
    dpo_vs_start = next((pair for pair in compared_pairs(workdir / "compare" / "compare.json", "DPO-start")
                         if pair["second"] == "DPO"), None)
    return LearningResults(
        rouge1={key: rouge1[key] for key in ("base", "sft", "dpo_start", "dpo", "rerank")},
        wording_only=wording_only_rouge1(at.task["train"], at.task["dev"]),
        stopped={tag: stopped_count(at.prediction(tag), at.model, size.max_new_tokens) for tag in ("sft", "dpo")},
        selected=(selection["best"], float(rows[selection["best"]]["metrics"]["rouge1"])),
        last=(last["name"], float(last["metrics"]["rouge1"])),
        dpo_accuracy=dpo_accuracy_history(at.dpo_run),
        dpo_vs_start=({key: dpo_vs_start[key] for key in ("difference", "low", "high", "verdict")}
                      if dpo_vs_start else None),
    )
