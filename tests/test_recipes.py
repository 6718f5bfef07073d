"""Every shipped recipe, accepted and trained by the real Axolotl on CPU; DeepSpeed configs parsed by DeepSpeed.

Each recipe in ``recipes/`` goes through ``tools cpu-overlay`` (tiny EXAONE-shaped model, fixture data
from ``tools build-sft-data``, the GPU-only keys of :data:`training.cpu_overlay.CPU_OVERLAY` switched off,
``max_steps`` 2) and then through Axolotl's own click CLI: ``axolotl preprocess CFG`` followed by
``axolotl train CFG --launcher python``. Both commands run in one subprocess (training/axolotl_cli.py: the same
``cli`` object the ``axolotl`` console script calls) to pay Axolotl's start-up once per recipe instead of twice.

A recipe that a documented CPU block already trains (the pipeline's docs/recipes.md: ``exaone_lora``;
docs/development.md: ``exaone_qlora``) is not trained a second time: its tests inspect that run, made by the
blocks as written (tests/doc_blocks.py), which is the same `tools cpu-overlay` + `axolotl preprocess` +
`axolotl train`.
The full fine-tune's tests inspect its `tools rehearse` run instead (2 processes, the recipe's own DeepSpeed ZeRO-3:
the same data, checkpoints and dev loss, run as on GPUs), made once for tests/training/test_rehearse.py too.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from common import io
from common.env import offline_env
from common.io import read_jsonl
from doc_blocks import trained_by_docs
from helpers import DEV, REPO, TRAIN
from tools.cli import cli
from training.cpu_overlay import CPU_OVERLAY, IN_PROCESS_SAVE, REMOVE, overlay_config, write_config

RECIPES = REPO / "recipes"
DEEPSPEED = REPO / "deepspeed_configs"
DOCS = REPO / "docs" / "recipes.md"
ENDOFTURN = "[|endofturn|]"
MAX_STEPS = 2

# The explicit lists: adding a file without adding it here (and to IN_STEP) fails test_*_are_all_listed.
SHIPPED_RECIPES = ["exaone_dpo.yml", "exaone_lora.yml", "exaone_qlora.yml", "exaone_sft.yml"]
SHIPPED_DEEPSPEED = ["zero2.json", "zero3_bf16.json", "zero3_bf16_offload.json"]
RECIPE_FILES = sorted(RECIPES.glob("*.yml"))
TRAINED_BY_DOCS = trained_by_docs()  # recipe file name → (documentation session, the CPU config it trains)
# recipe → the `tools rehearse` mode whose run its tests inspect (tests/training/test_rehearse.py makes both in every run)
REHEARSED = {"exaone_sft.yml": "zero3", "exaone_dpo.yml": "ddp"}
# The recipes trained here come first, then the rehearsed ones (this worker makes the rehearsal if the other has not
# begun it), the documentation's last: on the other pytest-xdist worker its session may still be going.
RECIPES_OWN_RUNS_FIRST = sorted(RECIPE_FILES, key=lambda path: (path.name in TRAINED_BY_DOCS, path.name in REHEARSED))
# QLoRA's CPU run (bitsandbytes' 4-bit layers on CPU, the documentation session that trains it) takes ~90 s: it runs
# under the `extended` marker, which CI runs (.ci/run); the other recipes in every `make test`.
EXTENDED = {"exaone_qlora.yml"}
RECIPE_RUNS = [pytest.param(path, marks=pytest.mark.extended) if path.name in EXTENDED else path
               for path in RECIPES_OWN_RUNS_FIRST]
DEEPSPEED_FILES = sorted(DEEPSPEED.glob("*.json"))

_LORA = {"adapter", "lora_r", "lora_alpha", "lora_dropout", "lora_target_linear",
         "lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel"}
# Neighbouring recipes differ in exactly these keys (missing on one side, or a different value).
IN_STEP = {
    ("exaone_lora.yml", "exaone_qlora.yml"): {"adapter", "load_in_4bit", "output_dir"},
    ("exaone_lora.yml", "exaone_sft.yml"): _LORA | {"gradient_accumulation_steps", "learning_rate", "deepspeed",
                                                     "output_dir", "save_only_model",
                                                     # reentrant for frozen weights under ZeRO-3 (transformers#47254)
                                                     "gradient_checkpointing_kwargs"},
    ("exaone_lora.yml", "exaone_dpo.yml"): {
        "base_model", "rl", "rl_beta", "dpo_loss_type", "dpo_loss_weights", "datasets", "test_datasets", "val_set_size", "output_dir",
        "sample_packing", "eval_sample_packing", "pad_to_sequence_len", "num_epochs", "learning_rate",
        "eval_strategy", "evals_per_epoch", "save_total_limit",
        # Axolotl keeps its fused LoRA kernels off for RL trainers; DPO needs the logits, not a fused loss
        "lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "liger_fused_linear_cross_entropy",
        # reentrant checkpointing: LoRA SFT needs it under ZeRO-3, DPO fails with it under DDP (docs/rehearse.md)
        "gradient_checkpointing_kwargs",
    },
}
CONVERTED_BASE = "models/EXAONE-3.0-7.8B-Instruct-llama"  # `tools convert-exaone` of the hub model
CONVERT_COMMAND = f"tools convert-exaone --model LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct --output-dir {CONVERTED_BASE}"
LIGER = {"liger_rope", "liger_rms_norm", "liger_glu_activation", "liger_fused_linear_cross_entropy"}
# Hyperparameters whose line must carry a `# why` comment wherever a recipe sets them.
MUST_EXPLAIN = {"sequence_len", "excess_length_strategy", "save_only_model", "sample_packing", "micro_batch_size",
                "gradient_accumulation_steps", "num_epochs", "optimizer", "learning_rate", "lr_scheduler", "warmup_ratio", "lora_r", "lora_alpha", "lora_dropout",
                "rl_beta", "dpo_loss_type", "dpo_loss_weights", "load_best_model_at_end", "val_set_size", "deepspeed", "adapter", "bf16", "base_model",
                "lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel", *LIGER}


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    io.write_jsonl(path, rows)
    return path


def axolotl_template(name: str) -> str:
    """A chat template as Axolotl ships it (read from the installed package, without importing it)."""
    package = Path(importlib.util.find_spec("axolotl").submodule_search_locations[0])
    return (package / "utils" / "chat_templates" / "templates" / f"{name}.jinja").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def sft_data(tmp_path_factory) -> dict[str, Path]:
    """SFT JSONL for the fixture splits, written by the real `tools build-sft-data`."""
    out = tmp_path_factory.mktemp("sft")
    paths = {}
    for split, source in (("train", TRAIN), ("dev", DEV)):
        paths[split] = out / f"{split}.jsonl"
        result = CliRunner().invoke(cli, ["build-sft-data", "--input", str(source), "--output", str(paths[split])])
        assert result.exit_code == 0, result.output
    return paths


@pytest.fixture(scope="session")
def dpo_data(sft_data, tmp_path_factory) -> dict[str, Path]:
    """Preference JSONL in `tools build-dpo-data`'s format: chosen = the reference, rejected = another summary."""
    out = tmp_path_factory.mktemp("dpo")
    paths = {}
    for split, source in sft_data.items():
        rows = read_jsonl(source)
        pairs = [{"id": row["id"], "messages": row["messages"][:2], "chosen": row["messages"][2],
                  "rejected": rows[(i + 1) % len(rows)]["messages"][2], "score_chosen": 100.0, "score_rejected": 20.0}
                 for i, row in enumerate(rows)]
        paths[split] = write_jsonl(out / f"{split}.jsonl", pairs)
    return paths


@pytest.fixture(scope="session")
def exaone4_model(tmp_path_factory) -> Path:
    """A second tiny model, EXAONE 4.0-shaped (native `Exaone4ForCausalLM`, other sizes), same tokenizer."""
    import torch
    from transformers import Exaone4Config, Exaone4ForCausalLM

    from dataset_builders.nikl import sample_files
    from exaone.tiny import build_tokenizer, corpus_from_nikl

    tokenizer = build_tokenizer(corpus_from_nikl(sample_files()))
    torch.manual_seed(1)
    config = Exaone4Config(
        vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        sliding_window=None, layer_types=["full_attention"] * 3,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-exaone4") / "model"
    Exaone4ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@dataclass
class Run:
    name: str
    recipe: dict        # the recipe as shipped
    config: dict        # the CPU config Axolotl ran
    output_dir: Path
    prepared_dir: Path
    train_data: Path
    eval_data: Path | None  # None: the run holds its dev rows out of train_data (the recipe's val_set_size)
    base_model: Path    # the config's base model (and tokenizer); a command-line override is not in it

    @classmethod
    def of(cls, name: str, recipe_path: Path, config_path: Path) -> "Run":
        """The run of the CPU config ``config_path`` (`tools cpu-overlay` writes every path in it absolute)."""
        config = load_yaml(config_path)
        eval_entries = config.get("test_datasets") or []
        assert len(eval_entries) == 1 or (not eval_entries and config.get("val_set_size")), "no dev set"
        return cls(name, load_yaml(recipe_path), config, Path(config["output_dir"]),
                   Path(config["dataset_prepared_path"]), Path(config["datasets"][0]["path"]),
                   Path(eval_entries[0]["path"]) if eval_entries else None, Path(config["base_model"]))

    def data_files(self) -> list[Path]:
        return [path for path in (self.train_data, self.eval_data) if path is not None]


@pytest.fixture(scope="session")
def axolotl_run(tiny_model, sft_data, dpo_data, run_once):
    """Run a recipe through `axolotl preprocess` + `axolotl train` once per test run (conftest.run_once); later
    calls, in any pytest-xdist worker, reuse it. A failed run fails every test that needs it."""

    def train(recipe_path: Path, work: Path, overrides: tuple[str, ...]) -> dict:
        data = dpo_data if load_yaml(recipe_path).get("rl") else sft_data
        config = overlay_config(recipe_path, base_model=tiny_model, train_data=data["train"], eval_data=data["dev"],
                                output_dir=work / "out", max_steps=MAX_STEPS)
        config_path = write_config(config, work / "config.yml", recipe=recipe_path)
        result = subprocess.run([sys.executable, "-m", "training.axolotl_cli", str(config_path), *overrides], cwd=work,
                                env=offline_env(), capture_output=True, text=True, timeout=900, check=False)
        (work / "axolotl.log").write_text(result.stdout + result.stderr, encoding="utf-8")
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
            return {"failure": (f"axolotl failed on {recipe_path.name} (exit {result.returncode}); "
                                f"log {work / 'axolotl.log'}\n{tail}")}
        return {"config": str(config_path)}

    def run(recipe_path: Path, *, key: str | None = None, overrides: tuple[str, ...] = ()) -> Run:
        key = key or recipe_path.name
        record = run_once(f"recipe-{key}", lambda work: train(recipe_path, work, overrides))
        return Run.of(key, recipe_path, Path(record["config"]))

    return run


@pytest.fixture(scope="session")
def recipe_run(axolotl_run, doc_session, rehearsal):
    """The real Axolotl run of a shipped recipe: the documentation's, where a CPU block trains it; for the full
    fine-tune, its 2-process ZeRO-3 rehearsal (tests/training/test_rehearse.py: the recipe as written, DeepSpeed included);
    else its own."""

    def run(recipe_path: Path) -> Run:
        if recipe_path.name in REHEARSED:
            work, _, _ = rehearsal(recipe_path.name, REHEARSED[recipe_path.name])
            return Run.of(f"{recipe_path.name} (tools rehearse)", recipe_path, work / "config.yml")
        if recipe_path.name not in TRAINED_BY_DOCS:
            return axolotl_run(recipe_path)
        session, config = TRAINED_BY_DOCS[recipe_path.name]
        return Run.of(f"{recipe_path.name} ({session.name})", recipe_path, doc_session(session).work / config)

    return run


def prepared_datasets(run: Run) -> list:
    from datasets import load_from_disk

    found = [load_from_disk(str(info.parent)) for info in sorted(run.prepared_dir.glob("*/dataset_info.json"))]
    expected = len(run.data_files())  # a dev set held out of the training rows is prepared with them
    assert len(found) == expected, f"expected {expected} prepared set(s) under {run.prepared_dir}, found {len(found)}"
    return found


def assert_sft_labels(run: Run, tokenizer, chat_template: str) -> None:
    """Loss only on the summary + [|endofturn|]: system, user turn, assistant header and trailing newline are -100."""
    sources = {}
    for path in run.data_files():
        for row in read_jsonl(path):
            sources[row["messages"][2]["content"] + ENDOFTURN] = row["messages"]
    seen = Counter()
    for dataset in prepared_datasets(run):
        for row in dataset:
            ids, labels = row["input_ids"], row["labels"]
            trained = [i for i, label in enumerate(labels) if label != -100]
            assert trained, "a row with no trained token"
            assert trained == list(range(trained[0], trained[-1] + 1)), "trained tokens are not one contiguous span"
            assert [labels[i] for i in trained] == [ids[i] for i in trained]
            target = tokenizer.decode([ids[i] for i in trained])
            assert target in sources, f"trained tokens decode to something that is not summary + {ENDOFTURN}: {target!r}"
            prompt = tokenizer.apply_chat_template(sources[target][:2], chat_template=chat_template,
                                                   add_generation_prompt=True, tokenize=False)
            assert tokenizer.decode(ids[:trained[0]]) == prompt  # system, user, assistant header: all masked
            assert tokenizer.decode(ids[trained[-1] + 1:]).strip() == ""  # only the newline after [|endofturn|]
            seen[target] += 1
    assert seen == Counter(list(sources)), "every train and dev example exactly once"


# --------------------------------------------------------------------------- coverage of the shipped files


def test_recipes_are_all_listed():
    assert [path.name for path in RECIPE_FILES] == SHIPPED_RECIPES, (
        "recipes/ changed: add the new recipe to SHIPPED_RECIPES and IN_STEP (it is then run like the others)")
    in_step = {name for pair in IN_STEP for name in pair}
    assert in_step == set(SHIPPED_RECIPES), "every recipe must be kept in step with a neighbour"


def test_deepspeed_configs_are_all_listed():
    assert [path.name for path in DEEPSPEED_FILES] == SHIPPED_DEEPSPEED


# --------------------------------------------------------------------------- the real Axolotl, per recipe


@pytest.mark.axolotl
@pytest.mark.extended
def test_another_base_model_by_documented_override(axolotl_run, exaone4_model):
    """docs/recipes.md: EXAONE 4.0 = the same recipe + `--base-model … --chat-template exaone4` on the command line."""
    from transformers import AutoTokenizer

    run = axolotl_run(RECIPES / "exaone_lora.yml", key="exaone_lora_exaone4",
                      overrides=("--base-model", str(exaone4_model), "--chat-template", "exaone4"))
    assert (run.output_dir / "adapter_model.safetensors").is_file()
    adapter = json.loads((run.output_dir / "adapter_config.json").read_text())
    assert Path(adapter["base_model_name_or_path"]) == exaone4_model
    assert json.loads((exaone4_model / "config.json").read_text())["model_type"] == "exaone4"
    # EXAONE 4's empty <think></think> block belongs to the (masked) assistant header, not to the target.
    assert_sft_labels(run, AutoTokenizer.from_pretrained(exaone4_model), axolotl_template("exaone4"))


@pytest.mark.axolotl
@pytest.mark.parametrize("recipe_path", RECIPE_RUNS, ids=lambda path: path.stem)
def test_recipe_trains_with_real_axolotl(recipe_path, recipe_run):
    run = recipe_run(recipe_path)
    final = "adapter_model.safetensors" if run.recipe.get("adapter") else "model.safetensors"
    assert (run.output_dir / final).is_file(), f"no {final} in {run.output_dir}"
    steps = run.config["max_steps"]
    state = json.loads((run.output_dir / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == steps
    logged = {key for entry in state["log_history"] for key in entry}
    assert "loss" in logged and "eval_loss" in logged  # trained and evaluated on the dev data
    if run.recipe.get("load_best_model_at_end"):
        assert state["best_model_checkpoint"], "best checkpoint by dev loss was not tracked"
    if run.recipe.get("adapter"):
        # the adapter and no second copy of the weights (Axolotl saves the LoRA-injected base after DPO;
        # the recipes' AdapterOnlyOutput plugin removes it)
        weights = sorted(path.name for path in run.output_dir.glob("*.safetensors"))
        assert weights == ["adapter_model.safetensors"], f"{run.output_dir} holds {weights}"
        adapter = json.loads((run.output_dir / "adapter_config.json").read_text())
        assert adapter["r"] == run.recipe["lora_r"] and adapter["lora_alpha"] == run.recipe["lora_alpha"]
        assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(
            adapter["target_modules"]), "LoRA is not on all linear layers"


@pytest.mark.axolotl
@pytest.mark.parametrize("recipe_path", RECIPE_RUNS, ids=lambda path: path.stem)
def test_prepared_dataset_trains_only_the_summary(recipe_path, recipe_run):
    from transformers import AutoTokenizer

    run = recipe_run(recipe_path)
    tokenizer = AutoTokenizer.from_pretrained(run.base_model)
    template = axolotl_template(run.recipe["chat_template"])
    if not run.recipe.get("rl"):
        assert_sft_labels(run, tokenizer, template)
        return
    # DPO: Axolotl renders prompt/chosen/rejected strings; TRL tokenizes them (and adds no second EOS). A dialogue
    # may have several pairs: every pair row of the files, rendered, exactly once.
    def rendered(pair: dict) -> tuple[str, str, str, str]:
        prompt = tokenizer.apply_chat_template(pair["messages"], chat_template=template, add_generation_prompt=True,
                                               tokenize=False)
        return pair["id"], prompt, pair["chosen"]["content"] + ENDOFTURN, pair["rejected"]["content"] + ENDOFTURN

    expected = Counter(rendered(pair) for path in run.data_files() for pair in read_jsonl(path))
    rows = [row for dataset in prepared_datasets(run) for row in dataset]
    assert all(row["prompt"].endswith("[|assistant|]") for row in rows)
    assert Counter((row["id"], row["prompt"], row["chosen"], row["rejected"]) for row in rows) == expected


# --------------------------------------------------------------------------- DeepSpeed


@pytest.mark.parametrize("path", DEEPSPEED_FILES, ids=lambda path: path.stem)
def test_deepspeed_config_parses_with_deepspeed(path):
    """Fill the `auto` values as the HF trainer does, then parse with DeepSpeed's own config class."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    raw = json.loads(path.read_text(encoding="utf-8"))
    args = SimpleNamespace(world_size=1, per_device_train_batch_size=1, gradient_accumulation_steps=4,
                           max_grad_norm=1.0, learning_rate=2e-5, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                           weight_decay=0.0, save_on_each_node=False, fp16=False, bf16=True, fp16_full_eval=False,
                           bf16_full_eval=False, get_warmup_steps=lambda steps: 0)
    try:
        hf_config = HfTrainerDeepSpeedConfig(raw)
        hf_config.trainer_config_process(args)
        hf_config.trainer_config_finalize(args, SimpleNamespace(config=SimpleNamespace(hidden_size=4096)), 100)
        filled = hf_config.config
    finally:
        unset_hf_deepspeed_config()
    assert '"auto"' not in json.dumps(filled), "an `auto` value the HF trainer does not fill"
    config = DeepSpeedConfig(filled)
    assert config.train_batch_size == 4 and config.gradient_accumulation_steps == 4
    assert config.bfloat16_config.enabled
    stage = int(path.stem[len("zero")])
    assert config.zero_optimization_stage == stage
    zero = config.zero_config
    offload = "offload" in path.stem  # the name says what it does, and nothing is offloaded silently
    assert (zero.offload_param is not None, zero.offload_optimizer is not None) == (offload and stage == 3, offload)
    if stage == 3:
        assert zero.gather_16bit_weights_on_model_save, "the final save must write consolidated weights"


# --------------------------------------------------------------------------- static checks of the recipes


def _recipe(name: str) -> dict:
    return load_yaml(RECIPES / name)


@pytest.mark.parametrize("pair", sorted(IN_STEP), ids="-vs-".join)
def test_recipes_in_step(pair):
    left, right = (_recipe(name) for name in pair)
    differing = {key for key in left.keys() | right.keys() if left.get(key, REMOVE) != right.get(key, REMOVE)}
    assert differing == IN_STEP[pair], (
        f"{pair[0]} and {pair[1]} differ in {sorted(differing)}; allowed: {sorted(IN_STEP[pair])}")


@pytest.mark.parametrize("recipe_path", RECIPE_FILES, ids=lambda path: path.stem)
def test_recipe_wiring(recipe_path):
    recipe = load_yaml(recipe_path)
    assert recipe["output_dir"] == "outputs/" + recipe_path.stem.replace("_", "-")
    assert recipe["chat_template"] == "exaone" and recipe["eot_tokens"] == [ENDOFTURN]
    assert "trust_remote_code" not in recipe and recipe["bf16"] is True  # converted EXAONE 3.x: native Llama
    assert recipe["plugins"] == ["axolotl.integrations.liger.LigerPlugin", "training.axolotl_plugins.AdapterOnlyOutput",
                                 "training.axolotl_plugins.MultiGpuGuard"]
    assert LIGER <= set(recipe)
    assert recipe["attn_implementation"] == "flash_attention_2" and "flash_attention" not in recipe
    assert recipe["gradient_checkpointing"] is True
    # Found by `tools rehearse` (docs/rehearse.md): LoRA SFT's frozen weights fail non-reentrant checkpointing under
    # ZeRO-3; DPO fails reentrant under DDP (and TRL itself switches to reentrant under ZeRO-3)
    reentrant = bool(recipe.get("adapter")) and not recipe.get("rl")
    assert recipe["gradient_checkpointing_kwargs"] == {"use_reentrant": reentrant}
    if recipe.get("deepspeed"):
        assert (REPO / recipe["deepspeed"]).is_file(), recipe["deepspeed"]
    (dataset,) = recipe["datasets"]
    if recipe.get("rl"):
        assert recipe["rl"] == "dpo" and recipe.get("adapter") == "lora"
        assert dataset["path"] == "data/dpo/train.jsonl" and dataset["type"] == "chat_template.default"
        assert (dataset["field_messages"], dataset["field_chosen"], dataset["field_rejected"]) == (
            "messages", "chosen", "rejected")
        assert recipe["base_model"] == "outputs/exaone-lora/merged"  # what `axolotl merge-lora` writes
    else:
        assert recipe["base_model"] == CONVERTED_BASE
        assert CONVERT_COMMAND in recipe_path.read_text(encoding="utf-8"), "the header shows the conversion first"
        assert dataset["path"] == "data/sft/train.jsonl" and dataset["type"] == "chat_template"
        assert dataset["roles_to_train"] == ["assistant"] and dataset["train_on_eos"] == "turn"
        (dev,) = recipe["test_datasets"]
        assert dev["path"] == "data/sft/dev.jsonl" and {**dev, "path": None, "split": None} == {
            **dataset, "path": None, "split": None}
        assert recipe["sample_packing"] is True
        if recipe.get("adapter"):  # native Llama: Axolotl's fused LoRA kernels apply
            assert recipe["lora_mlp_kernel"] and recipe["lora_qkv_kernel"] and recipe["lora_o_kernel"]
        # Every epoch's weights stay, for `tools select-checkpoint`; nothing picks or deletes by dev loss.
        assert recipe["save_strategy"] == "epoch" and recipe["eval_strategy"] == "epoch"
        assert not {"load_best_model_at_end", "metric_for_best_model"} & set(recipe)
        # Axolotl keeps 4 checkpoints when save_total_limit is unset (core/builders/base.py), deleting the oldest
        assert recipe["save_total_limit"] >= recipe["num_epochs"]
        assert recipe.get("save_only_model", False) is (recipe.get("adapter") is None)  # full SFT: weights only
    assert recipe["excess_length_strategy"] == "raise"  # a row too long for sequence_len is an error, never dropped


@pytest.mark.parametrize("recipe_path", RECIPE_FILES, ids=lambda path: path.stem)
def test_hyperparameters_say_why(recipe_path):
    missing = []
    for line in recipe_path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([a-z_0-9]+):\s*(\S.*)?$", line)
        if match and match.group(1) in MUST_EXPLAIN and "#" not in (match.group(2) or ""):
            missing.append(match.group(1))
    assert not missing, f"{recipe_path.name}: add a one-line `# why` to {missing}"


def test_docs_convert_exaone_3_first():
    """EXAONE 3.x is trained as the converted Llama-layout checkpoint (docs/convert.md makes it, docs/recipes.md
    trains it): no remote code in any recipe command."""
    assert CONVERT_COMMAND in (REPO / "docs" / "convert.md").read_text(encoding="utf-8")
    text = DOCS.read_text(encoding="utf-8")
    assert CONVERTED_BASE in text and "(convert.md)" in text
    assert "transformer_layer_cls_to_wrap: LlamaDecoderLayer" in text
    assert "trust_remote_code" not in text and "--trust-remote-code" not in text


def test_no_secrets_in_recipes_or_docs():
    token = re.compile(r"hf_[A-Za-z0-9]{20,}|(?i:(token|password|secret|api_key)\s*[:=]\s*['\"]?[A-Za-z0-9_\-]{12,})")
    for path in [*RECIPE_FILES, *DEEPSPEED_FILES, REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        assert not token.search(path.read_text(encoding="utf-8")), f"{path} looks like it holds a secret"
    for path in RECIPE_FILES:
        assert not load_yaml(path).get("hf_use_auth_token"), "the hub token comes from the environment"


def test_docs_name_real_files():
    text = DOCS.read_text(encoding="utf-8")
    named = set(re.findall(r"(?:recipes|deepspeed_configs)/[\w.]+\.(?:yml|json)", text))
    assert {f"recipes/{name}" for name in SHIPPED_RECIPES} <= named, "docs/recipes.md must show every recipe"
    assert {f"deepspeed_configs/{name}" for name in SHIPPED_DEEPSPEED} <= named
    assert all((REPO / path).is_file() for path in named), sorted(p for p in named if not (REPO / p).is_file())


# --------------------------------------------------------------------------- tools cpu-overlay


def test_overlay_switches_off_exactly_the_gpu_only_keys(tmp_path, sft_data):
    recipe = _recipe("exaone_sft.yml")
    config = overlay_config(RECIPES / "exaone_sft.yml", base_model=tmp_path / "model", train_data=sft_data["train"],
                            eval_data=sft_data["dev"], output_dir=tmp_path / "out", max_steps=3)
    for key, value in CPU_OVERLAY.items():
        assert (key not in config) if value is REMOVE else config[key] == value, key
    assert "deepspeed" in recipe and "deepspeed" not in config
    assert config["max_steps"] == config["save_steps"] == config["eval_steps"] == 3
    assert config["datasets"][0]["path"] == str(sft_data["train"].resolve())
    assert config["test_datasets"][0]["path"] == str(sft_data["dev"].resolve())
    assert config["output_dir"] == str((tmp_path / "out").resolve())
    assert config["dataset_prepared_path"] == str((tmp_path / "out" / "prepared").resolve())
    assert config["plugins"] == [*recipe["plugins"], IN_PROCESS_SAVE]
    # everything else is the recipe, unchanged
    changed = set(CPU_OVERLAY) | {"plugins", "base_model", "datasets", "test_datasets", "output_dir", "dataset_prepared_path",
                                  "max_steps", "save_steps", "eval_steps", "eval_strategy", "val_set_size"}
    assert {key: value for key, value in config.items() if key not in changed} == {
        key: value for key, value in recipe.items() if key not in changed}


def test_overlay_without_eval_data_turns_evaluation_off(tmp_path, dpo_data):
    config = overlay_config(RECIPES / "exaone_dpo.yml", base_model="some/hub-id", train_data=dpo_data["train"],
                            output_dir=tmp_path / "out", max_steps=2)
    assert config["base_model"] == "some/hub-id"  # not a local path: kept as a hub id
    assert config["eval_strategy"] == "no" and config["val_set_size"] == 0 and "test_datasets" not in config
    assert "load_best_model_at_end" not in config


def test_overlay_with_eval_data_reuses_the_training_entry_for_dpo(tmp_path, dpo_data):
    config = overlay_config(RECIPES / "exaone_dpo.yml", base_model="m", train_data=dpo_data["train"],
                            eval_data=dpo_data["dev"], output_dir=tmp_path / "out", max_steps=2)
    (dev,) = config["test_datasets"]
    assert dev == {**config["datasets"][0], "path": str(dpo_data["dev"].resolve()), "split": "train"}
    assert config["val_set_size"] == 0


def overlay_cli(*args) -> object:
    return CliRunner().invoke(cli, ["cpu-overlay", *map(str, args)])


def test_overlay_command_writes_a_config(tmp_path, sft_data):
    out, base = tmp_path / "configs" / "lora.cpu.yml", tmp_path / "model"
    base.mkdir()  # beside the output folder: an output folder inside the base model is refused
    result = overlay_cli(RECIPES / "exaone_lora.yml", "--base-model", base, "--train-data", sft_data["train"],
                         "--eval-data", sft_data["dev"], "--output-dir", tmp_path / "out", "--max-steps", 2,
                         "--config-out", out)
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("# Derived from")
    config = load_yaml(out)
    assert config["max_steps"] == 2 and config["lora_qkv_kernel"] is False and config["bf16"] is False


def test_overlay_set_changes_a_recipe_value_and_says_so(tmp_path, sft_data):
    out = tmp_path / "sft.cpu.yml"
    (base := tmp_path / "model").mkdir()
    result = overlay_cli(RECIPES / "exaone_sft.yml", "--base-model", base, "--train-data", sft_data["train"],
                         "--output-dir", tmp_path / "out", "--config-out", out, "--set", "learning_rate=2e-3",
                         "--set", "sample_packing=false", "--set", "micro_batch_size=16")
    assert result.exit_code == 0, result.output
    assert "overrides: learning_rate 0.002 (recipe: 2e-05), sample_packing False (recipe: True)" in result.output
    config = load_yaml(out)  # 2e-3 is a number, as Axolotl needs it, though YAML 1.1 reads it as a string
    assert (config["learning_rate"], config["sample_packing"], config["micro_batch_size"]) == (0.002, False, 16)
    assert "# Overrides (--set): learning_rate 0.002 (recipe: 2e-05)" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("setting, message", [
    ("learnig_rate=1e-3", "has no key 'learnig_rate'"),  # a typo is an error, not a key Axolotl ignores
    ("max_steps=5", "the overlay sets max_steps itself"),
    ("bf16=true", "the overlay sets bf16 itself"),  # CPU_OVERLAY's keys stay as the CPU needs them
    ("learning_rate", "expected KEY=VALUE"),
])
def test_overlay_set_refuses_what_it_cannot_change(tmp_path, sft_data, setting, message):
    (base := tmp_path / "model").mkdir()
    result = overlay_cli(RECIPES / "exaone_sft.yml", "--base-model", base, "--train-data", sft_data["train"],
                         "--output-dir", tmp_path / "out", "--config-out", tmp_path / "x.yml", "--set", setting)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "x.yml").exists()


@pytest.mark.parametrize("content, message", [
    ("base_model: [unclosed\n", "not valid YAML (line"),
    ("- just\n- a list\n", "expected a YAML mapping"),
    ("base_model: x\n", "expected exactly one entry under `datasets:`"),
])
def test_overlay_rejects_bad_recipes_with_one_line(tmp_path, sft_data, content, message):
    recipe = tmp_path / "bad.yml"
    recipe.write_text(content, encoding="utf-8")
    result = overlay_cli(recipe, "--base-model", "m", "--train-data", sft_data["train"], "--output-dir", tmp_path,
                         "--config-out", tmp_path / "c.yml")
    assert result.exit_code == 1
    assert f"Error: {recipe}: {message}" in result.output
    assert not (tmp_path / "c.yml").exists()


def test_overlay_rejects_a_missing_recipe(tmp_path, sft_data):
    result = overlay_cli(tmp_path / "nope.yml", "--base-model", "m", "--train-data", sft_data["train"],
                         "--output-dir", tmp_path, "--config-out", tmp_path / "c.yml")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_overlay_help():
    result = CliRunner().invoke(cli, ["cpu-overlay", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output and "--config-out" in result.output


@pytest.mark.axolotl
@pytest.mark.extended
def test_the_qlora_documentation_session_runs_as_written(doc_session):
    """The marked blocks of the documentation session that trains `exaone_qlora` (docs/development.md), in order, as
    written (tests/doc_blocks.py), after the set-up's exports. It sits here, not in test_readme.py, because the
    recipe tests above inspect that run: the worker that runs this file makes it instead of waiting for another
    (see test_readme.py)."""
    session, _ = TRAINED_BY_DOCS["exaone_qlora.yml"]
    assert session.name != "pipeline", "the pipeline session runs in tests/test_readme.py"
    run = doc_session(session)
    assert run.ran == [command for _, command in session.commands()]
