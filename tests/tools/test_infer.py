"""`tools infer` on the tiny random model: submission format, resume after a kill, batching,
LoRA adapters, candidates, post-processing, truncation, bad input and the OOM back-off."""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from common.env import offline_env
from common.errors import UserError
from common.tokenizer import load_tokenizer
from dataset_builders.dpo import parse_candidates
from dataset_builders.nikl import load_nikl
from dataset_builders.prompt import PromptBuilder, question_text
from dataset_builders.synthetic import write_split
from generation.batching import BatchLimit, DEFAULT_MAX_BATCH_TOKENS, batch_tokens, plan_batches
from generation.checkpoints import resolve_checkpoint
from generation.decoding import Decoding, postprocess, trim_at_stop
from generation.hf import HFEngine
from generation.jobs import Job, prepare_jobs
from generation.loader import load_engine
from generation.runner import generate_all, prompt_budget
from generation.sidecar import SIDECAR_SUFFIX
from helpers import (
    DEV,
    REPO,
    TEST,
    TRAIN,
    count_calls,
    load_json,
    one_line_error,
    opened_files,
    random_lora,
    tools_cli,
    tools_command,
)
from tools.cli import cli

ALL = [TRAIN, DEV, TEST]  # 16 dialogues, prompts of 129–192 tiny-tokenizer tokens


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model's ops are too small to share out: one thread is as fast, and far steadier when
    other processes compete for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def infer(*args):
    return CliRunner().invoke(cli, ["infer", "--no-progress", "--threads", "1", *map(str, args)])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def outputs(path: Path) -> dict[str, str]:
    return {row["id"]: row["output"] for row in load_json(path)}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """All 16 fixture dialogues in one test-style file (outputs empty), prompts of different lengths."""
    rows = [{**raw, "output": ""} for path in ALL for raw in load_json(path)]
    path = tmp_path_factory.mktemp("data") / "mixed.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- post-processing


@pytest.mark.parametrize("raw, clean", [
    ("SD2100503과 SD2100504는\n등산에 대해\n\n이야기했다.", "SD2100503과 SD2100504는 등산에 대해 이야기했다."),
    ("  두  화자는   여행을 이야기했다.  ", "두 화자는 여행을 이야기했다."),
    ("[|assistant|]요약입니다.[|endofturn|]", "요약입니다."),
    ("요약입니다.[|endofturn|]\n[|user|]다음 질문", "요약입니다. 다음 질문"),
    ("\t\n", ""),
])
def test_postprocess(raw, clean):
    assert postprocess(raw) == clean


def test_postprocess_removes_the_tokenizers_special_tokens_too():
    assert postprocess("[BOS]요약[PAD][PAD]", ["[BOS]", "[PAD]"]) == "요약"


def test_trim_at_stop():
    assert trim_at_stop([5, 6, 2, 0, 0], [2]) == [5, 6]
    assert trim_at_stop([5, 6, 7], [2]) == [5, 6, 7]
    assert trim_at_stop([3, 5], [2, 3]) == []


# --------------------------------------------------------------------------- the submission file


def test_submission_keeps_order_and_fields(tmp_path, tiny_model):
    out = tmp_path / "result.json"
    result = ok(infer("--ckpt", tiny_model, "--input", TEST, "--output", out, "--max-new-tokens", 8,
                      "--batch-size", 3))
    raw = load_json(TEST)
    written = load_json(out)
    assert [row["id"] for row in written] == [row["id"] for row in raw]
    for before, after in zip(raw, written):
        assert list(after) == list(before)  # same keys, same order
        assert {k: v for k, v in after.items() if k != "output"} == {k: v for k, v in before.items() if k != "output"}
        assert isinstance(after["output"], str) and after["output"] == postprocess(after["output"])
        assert "[|" not in after["output"]
    text = out.read_text(encoding="utf-8")
    assert text == json.dumps(written, ensure_ascii=False, indent=4) + "\n"  # indent 4, UTF-8 not escaped
    assert "어~" in text
    assert not Path(str(out) + SIDECAR_SUFFIX).exists()  # the sidecar goes once the file is written
    assert f"examples: {len(raw)}" in result.output and "examples/s" in result.output


def test_batched_greedy_equals_sequential(tmp_path, tiny_model, mixed):
    """Fixed batches, token budgets (prompts of 129–192 tokens + 16 new: 1–2 and ~5 dialogues a batch) and the
    default budget (all 16 in one batch) all give the sequential outputs."""
    runs, summaries = {}, {}
    cases = {"sequential": ["--batch-size", 1], "fixed 4": ["--batch-size", 4, "--max-batch-tokens", 0],
             "fixed 16": ["--batch-size", 16, "--max-batch-tokens", 0], "budget 400": ["--max-batch-tokens", 400],
             "budget 1000": ["--max-batch-tokens", 1000], "default": []}
    for name, args in cases.items():
        out = tmp_path / f"{name}.json"
        result = ok(infer("--ckpt", tiny_model, "--input", mixed, "--output", out, "--max-new-tokens", 16, *args))
        runs[name] = outputs(out)
        summaries[name] = next(line for line in result.output.splitlines() if line.startswith("generation:"))
    assert len(runs["sequential"]) == 16 and all(runs["sequential"].values())
    assert all(run == runs["sequential"] for run in runs.values())
    cpu_budget = DEFAULT_MAX_BATCH_TOKENS["cpu"]  # ≥ 16 × (192 + 16): every dialogue in one batch
    assert summaries["sequential"].endswith(
        f"16 batches of 1 dialogue (--max-batch-tokens {cpu_budget}, --batch-size 1)")
    assert summaries["fixed 4"].endswith("4 batches of 4 dialogues (--batch-size 4)")
    assert summaries["default"].endswith(f"1 batch of 16 dialogues (--max-batch-tokens {cpu_budget})")
    assert "batches of 1–2 dialogues (--max-batch-tokens 400)" in summaries["budget 400"]
    assert "(--max-batch-tokens 1000)" in summaries["budget 1000"]


def test_batches_by_token_budget():
    """Longest prompts first; a batch grows while rows × (longest prompt + new tokens) fits the budget, so long
    prompts go in small batches and short ones in large; candidates count as rows; a dialogue over the budget
    runs alone; --batch-size caps the dialogues."""
    jobs = [Job(f"s{i}", [1] * 100) for i in range(12)] + [Job(f"l{i}", [1] * (1000 - i)) for i in range(3)]
    sizes = [[len(job.prompt_ids) for job in batch] for batch in plan_batches(jobs, BatchLimit(2400), new_tokens=100)]
    assert sizes == [[1000, 999], [998, 100], [100] * 11]
    two_rows = plan_batches(jobs, BatchLimit(2400), new_tokens=100, rows_per_dialogue=2)
    assert [len(b) for b in two_rows] == [1, 1, 1, 6, 6]
    assert [len(b) for b in plan_batches(jobs, BatchLimit(500), new_tokens=100)] == [1, 1, 1, 2, 2, 2, 2, 2, 2]
    assert [len(b) for b in plan_batches(jobs, BatchLimit(10**6, max_dialogues=4))] == [4, 4, 4, 3]
    assert [len(b) for b in plan_batches(jobs, BatchLimit(None, max_dialogues=8))] == [8, 7]
    assert batch_tokens(jobs[-3:], new_tokens=100, rows_per_dialogue=3) == 3 * 3 * 1100
    with pytest.raises(ValueError):
        BatchLimit(0)


def test_resume_after_kill(tmp_path, tiny_model, write_nikl):
    # 32 dialogues, one per generate call, so the run is still going when the first rows land.
    raw = [{**item, "id": f"{item['id']}-{copy}", "output": ""} for copy in range(2) for path in ALL
           for item in load_json(path)]
    data = write_nikl(raw)
    out = tmp_path / "result.json"
    sidecar = Path(str(out) + SIDECAR_SUFFIX)
    args = ["infer", "--no-progress", "--threads", "1", "--ckpt", str(tiny_model), "--input", str(data), "--output", str(out),
            "--max-new-tokens", "32", "--batch-size", "1"]
    env = {**offline_env(), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(tools_command() + args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (sidecar.exists() and len(sidecar.read_bytes().splitlines()) >= 3):  # header + ≥ 2 rows
        assert process.poll() is None, process.communicate()[0].decode()
        assert time.monotonic() < deadline, "no results appeared in the sidecar"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()

    text = sidecar.read_text(encoding="utf-8")
    lines = text[:text.rfind("\n")].splitlines()  # the kill may have cut the last line short
    finished = [json.loads(line) for line in lines[1:]]
    assert 2 <= len(finished) < len(raw)
    # Mark one finished row: if the resumed run regenerated it, the mark would be gone.
    finished[0]["output"] = "FROM-SIDECAR"
    sidecar.write_text("\n".join([lines[0], *map(json.dumps, finished)]) + "\n", encoding="utf-8")

    # Other settings never mix with the saved results: refused, sidecar untouched.
    refused = CliRunner().invoke(cli, [*args[:-4], "--max-new-tokens", "8", "--batch-size", "1"])
    message = one_line_error(refused)
    assert "different settings (decoding, prompt)" in message and "--restart" in message  # budget = context - new tokens
    assert len(sidecar.read_text(encoding="utf-8").splitlines()) == len(lines)

    resumed = ok(CliRunner().invoke(cli, args))  # the same command again
    assert f"({len(finished)} resumed from {sidecar}, {len(raw) - len(finished)} generated)" in resumed.output
    written = load_json(out)
    assert [row["id"] for row in written] == [row["id"] for row in raw]  # every id once, in input order
    by_id = {row["id"]: row["output"] for row in written}
    assert by_id[finished[0]["id"]] == "FROM-SIDECAR"
    assert all(by_id[row["id"]] == row["output"] for row in finished)
    assert all(by_id.values()) and not sidecar.exists()


def test_restart_discards_old_results_and_torn_lines_are_dropped(tmp_path, tiny_model):
    out = tmp_path / "result.json"
    sidecar = Path(str(out) + SIDECAR_SUFFIX)
    ok(infer("--ckpt", tiny_model, "--input", TEST, "--output", out, "--max-new-tokens", 8))
    reference = outputs(out)
    # A crashed run with other settings left a sidecar, its last line cut short by the kill.
    sidecar.write_text(json.dumps({"header": {"decoding": "other"}}) + '\n{"id": "nikl-test-000001", "output": "x"}'
                       '\n{"id": "nikl-te', encoding="utf-8")
    assert "different settings" in one_line_error(
        infer("--ckpt", tiny_model, "--input", TEST, "--output", out, "--max-new-tokens", 8))
    result = ok(infer("--ckpt", tiny_model, "--input", TEST, "--output", out, "--max-new-tokens", 8, "--restart"))
    assert "resumed" not in result.output and outputs(out) == reference and not sidecar.exists()
    # Killed while the header was being written: nothing to resume, a fresh start.
    sidecar.write_bytes(b'{"header": {"back')
    ok(infer("--ckpt", tiny_model, "--input", TEST, "--output", out, "--max-new-tokens", 8))
    assert outputs(out) == reference


# --------------------------------------------------------------------------- LoRA adapters


@pytest.fixture(scope="module")
def lora(tiny_model, tmp_path_factory):
    """A PEFT LoRA adapter on the tiny model (B ≠ 0, so it changes outputs) and the same model merged."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("lora")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = random_lora(tiny_model, seed=1, scale=0.5)
    adapter, merged = root / "adapter", root / "merged"
    model.save_pretrained(adapter)  # adapter_config.json + adapter_model.safetensors
    tokenizer.save_pretrained(adapter)  # as Axolotl's output dir has it
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model)
    model.merge_and_unload().save_pretrained(merged)
    tokenizer.save_pretrained(merged)
    return adapter, merged


def test_lora_adapter_dir(tmp_path, tiny_model, lora, mixed):
    adapter, merged = lora
    common = ["--input", mixed, "--max-new-tokens", 12, "--batch-size", 8]
    results = {}
    for name, extra in {"base": ["--ckpt", tiny_model], "merged": ["--ckpt", merged], "adapter": ["--ckpt", adapter],
                        "adapter+merge": ["--ckpt", adapter, "--merge-lora"]}.items():
        ok(infer(*extra, *common, "--output", tmp_path / f"{name}.json"))
        results[name] = outputs(tmp_path / f"{name}.json")
    assert results["adapter"] == results["merged"] == results["adapter+merge"]
    assert sum(results["adapter"][key] != results["base"][key] for key in results["base"]) >= 12


def test_lora_adapter_with_missing_base(tmp_path, lora):
    adapter, _ = lora
    moved = tmp_path / "adapter"
    moved.mkdir()
    config = json.loads((adapter / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/nowhere/base"}))
    message = one_line_error(infer("--ckpt", moved, "--input", TEST, "--output", tmp_path / "r.json"))
    assert "its base model (base_model_name_or_path) /nowhere/base: no such directory" in message
    assert "--base-model" in message


def test_a_run_reads_the_checkpoints_config_once(tmp_path, tiny_model, lora):
    """resolve_checkpoint reads config.json; the EXAONE-layout check, the tokenizer, the model and the fingerprint
    use what it read — for a full checkpoint and for an adapter's base (fresh copies: nothing read before)."""
    full, base, adapter = tmp_path / "full", tmp_path / "base", tmp_path / "adapter"
    shutil.copytree(tiny_model, full)
    shutil.copytree(tiny_model, base)
    shutil.copytree(lora[0], adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(base)}))
    for ckpt, model in ((full, full), (adapter, base)):
        with opened_files() as opened:
            ok(infer("--ckpt", ckpt, "--input", TEST, "--output", tmp_path / f"{ckpt.name}.json", "--max-new-tokens", 2))
        assert opened.count(str(model / "config.json")) == 1, opened


def test_one_checkpoint_resolution_and_one_lock_per_infer(tmp_path, tiny_model, lora, monkeypatch):
    """`tools infer` resolves --ckpt once (loading reads what that found) and takes the output's lock once, before
    loading — for a full checkpoint and for an adapter on its base."""
    from generation.sidecar import output_lock

    for ckpt in (tiny_model, lora[0]):
        resolved, locked = count_calls(monkeypatch, resolve_checkpoint), count_calls(monkeypatch, output_lock)
        output = tmp_path / f"{Path(ckpt).name}.json"
        ok(infer("--ckpt", ckpt, "--input", TEST, "--output", output, "--max-new-tokens", 2))
        assert [str(args[0]) for args in resolved] == [str(ckpt)]
        assert [str(args[0]) for args in locked] == [str(output)]
        monkeypatch.undo()


def test_the_config_built_from_what_was_read_is_transformers_own(tiny_model, tmp_path):
    from transformers import AutoConfig

    from generation.checkpoints import Checkpoint

    built = resolve_checkpoint(tiny_model).transformers_config()
    assert built.to_dict() == AutoConfig.from_pretrained(tiny_model).to_dict()
    remote = {**load_json(Path(tiny_model) / "config.json"), "auto_map": {"AutoConfig": "custom.Config"}}
    assert Checkpoint(str(tiny_model), config=remote).transformers_config() is None  # its own code: left to it


# --------------------------------------------------------------------------- candidates


def test_candidates_are_seeded_and_independent_of_batch_size(tmp_path, tiny_model, monkeypatch):
    def sample(name, batch_size, seed, check=ok, budget=None):
        out = tmp_path / f"{name}.jsonl"
        result = check(infer("--ckpt", tiny_model, "--input", TRAIN, "--output", out, "--max-new-tokens", 8,
                             "--batch-size", batch_size, "--num-candidates", 3, "--temperature", 1.0, "--top-p", 0.9,
                             "--seed", seed, *(["--max-batch-tokens", budget] if budget else [])))
        if budget:  # each dialogue is 3 rows of ≤ 192 + 8 tokens: 600 a dialogue, so 2 fit in 1,200
            assert "4 batches of 2 dialogues (--max-batch-tokens 1200, --batch-size 8)" in result.output
        return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else None

    rows = sample("a", 1, 5)
    assert [row["id"] for row in rows] == [item["id"] for item in load_json(TRAIN)]
    assert all(set(row) == {"id", "candidates"} and len(row["candidates"]) == 3 for row in rows)
    assert len(parse_candidates(rows, "a.jsonl", {row["id"] for row in rows})) == len(rows)  # DPO building reads it
    assert all(len(set(row["candidates"])) > 1 for row in rows)  # sampled, not three greedy copies
    assert sample("b", 4, 5) == rows  # same seed, other batch size: the same candidates
    assert sample("budget", 8, 5, budget=1200) == rows  # batched by a token budget: the same candidates
    assert sample("c", 4, 6) != rows

    # Interrupted after its first batch, then resumed: still the same candidates.
    generate = HFEngine.generate

    calls = []

    def interrupted(self, jobs):
        calls.append(len(jobs))
        if len(calls) > 1:
            raise KeyboardInterrupt
        return generate(self, jobs)

    monkeypatch.setattr(HFEngine, "generate", interrupted)
    assert sample("d", 2, 5, check=lambda result: result.exit_code != 0 or pytest.fail(result.output)) is None
    assert len(Path(tmp_path / f"d.jsonl{SIDECAR_SUFFIX}").read_text().splitlines()) == 1 + 2  # header + 2 ids
    monkeypatch.setattr(HFEngine, "generate", generate)
    assert sample("d", 2, 5) == rows


def test_sampling_flags_need_num_candidates(tmp_path, tiny_model):
    result = infer("--ckpt", tiny_model, "--input", TEST, "--output", tmp_path / "r.json", "--temperature", 0.7)
    assert result.exit_code == 2 and "--temperature applies only with --num-candidates" in result.output


# --------------------------------------------------------------------------- prompts


def test_truncation_uses_the_sft_prompt_builder(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    sft = tmp_path / "sft.jsonl"
    ok(CliRunner().invoke(cli, ["build-sft-data", "--input", str(TRAIN), "--output", str(sft), "--tokenizer",
                                str(tiny_model), "--max-prompt-tokens", "100"]))
    result = ok(infer("--ckpt", tiny_model, "--input", TRAIN, "--output", tmp_path / "r.json", "--max-new-tokens", 4,
                      "--max-prompt-tokens", 100))
    assert "prompts truncated: 8" in result.output
    # The prompts inference feeds the model are the SFT rows' prompts, rendered by the chat template.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    jobs = prepare_jobs(load_nikl(TRAIN), PromptBuilder(tokenizer=tokenizer, max_prompt_tokens=100), tokenizer)
    for job, line in zip(jobs, sft.read_text(encoding="utf-8").splitlines()):
        messages = json.loads(line)["messages"][:2]
        expected = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        assert job.truncated and len(job.prompt_ids) <= 100
        assert job.prompt_ids == list(getattr(expected, "input_ids", expected))
        assert tokenizer.decode(job.prompt_ids).endswith("주제에 대한 대화를 요약해주세요.\n[|assistant|]")


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line(tmp_path, tiny_model, write_nikl):
    out = tmp_path / "r.json"
    message = one_line_error(infer("--ckpt", tiny_model, "--input", write_nikl("[{"), "--output", out))
    assert "not valid JSON" in message
    bad = [{**load_json(TEST)[0], "input": {"subject_keyword": ["여행"]}}]
    assert "missing field 'input.conversation'" in one_line_error(
        infer("--ckpt", tiny_model, "--input", write_nikl(bad, "bad.json"), "--output", out))
    assert "no such directory" in one_line_error(
        infer("--ckpt", tmp_path / "no" / "such-ckpt", "--input", TEST, "--output", out))
    (tmp_path / "empty").mkdir()
    assert "no config.json" in one_line_error(infer("--ckpt", tmp_path / "empty", "--input", TEST, "--output", out))
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_device_without_gpu_is_a_clear_error(tmp_path, tiny_model):
    message = one_line_error(infer("--ckpt", tiny_model, "--input", TEST, "--output", tmp_path / "r.json",
                                   "--device", "cuda"))
    assert "--device cuda: no CUDA GPU" in message


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_missing_is_a_clear_error(tmp_path, tiny_model):
    message = one_line_error(infer("--ckpt", tiny_model, "--input", TEST, "--output", tmp_path / "r.json",
                                   "--backend", "vllm"))
    assert "vLLM" in message and "--backend hf" in message


# --------------------------------------------------------------------------- CUDA OOM back-off


def test_oom_halves_the_budget_and_retries(tiny_model):
    engine = load_engine(resolve_checkpoint(tiny_model), Decoding(max_new_tokens=8))
    jobs = prepare_jobs(load_nikl(TRAIN), PromptBuilder(tokenizer=engine.tokenizer), engine.tokenizer)
    expected = {job.id: texts for job, texts in zip(jobs, engine.generate(jobs))}
    calls, got = [], {}

    def generate_oom_once(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return engine.generate(batch)

    def collect(batch, results):
        for job, texts in zip(batch, results):
            assert job.id not in got
            got[job.id] = texts

    longest = max(len(job.prompt_ids) for job in jobs)  # 8 training dialogues of 150–192 prompt tokens
    budget = 8 * (longest + 8)
    final = generate_all(jobs, generate_oom_once, limit=BatchLimit(budget), new_tokens=8, on_batch=collect,
                         progress=False)
    assert calls[0] == 8 and final == BatchLimit(budget // 2)  # half of what the failed batch held
    assert all(size <= 4 for size in calls[1:]) and sum(calls[1:]) == 8
    assert got == expected

    def always_oom(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(UserError, match="even at batch size 1"):
        generate_all(jobs, always_oom, limit=BatchLimit(budget), progress=False)


SMALL_CONTEXT = 512


@pytest.fixture(scope="module")
def short_context_model(tiny_model, tmp_path_factory):
    """The tiny model with a 512-position context: a real-length dialogue is far longer than that."""
    path = tmp_path_factory.mktemp("short-context") / "model"
    shutil.copytree(tiny_model, path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": SMALL_CONTEXT}))
    return path


@pytest.fixture(scope="module")
def long_test_file(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("synthetic"), "test", count=3)


def test_infer_never_overflows_the_context(short_context_model, long_test_file):
    """Default options: the prompt budget is the context minus --max-new-tokens; long conversations are cut
    in the middle, the [Question] line survives, and the summary line says how many were cut."""
    result = tools_cli("infer", "--no-progress", "--threads", 1, "--ckpt", short_context_model, "--input", long_test_file,
                 "--output", long_test_file.with_name("result.json"), "--max-new-tokens", 16)
    assert result.exit_code == 0, result.output
    budget = SMALL_CONTEXT - 16
    assert f"prompts truncated: 3 (budget {budget} tokens;" in result.output
    assert "utterances dropped from the middle" in result.output
    tokenizer = load_tokenizer(str(short_context_model))
    examples = load_nikl(long_test_file)
    builder = PromptBuilder(tokenizer=tokenizer, max_prompt_tokens=prompt_budget(SMALL_CONTEXT, 16, None))
    for example, job in zip(examples, prepare_jobs(examples, builder, tokenizer)):
        assert job.truncated and len(job.prompt_ids) <= budget
        assert len(PromptBuilder(tokenizer=tokenizer).build(example).token_ids) > SMALL_CONTEXT + 300  # far longer
        assert tokenizer.decode(job.prompt_ids).endswith(question_text(example.subject_keyword) + "\n[|assistant|]")
    written = load_json(long_test_file.with_name("result.json"))
    assert all(item["output"] == postprocess(item["output"]) for item in written)


def test_asking_for_more_than_fits_is_an_error(short_context_model, long_test_file, tmp_path):
    result = tools_cli("infer", "--ckpt", short_context_model, "--input", long_test_file, "--output", tmp_path / "r.json",
                 "--max-prompt-tokens", 500, "--max-new-tokens", 100)
    assert result.exit_code == 1
    assert "--max-prompt-tokens 500 + --max-new-tokens 100 = 600 tokens do not fit the model's context of 512" in result.output
    result = tools_cli("infer", "--ckpt", short_context_model, "--input", long_test_file, "--output", tmp_path / "r.json",
                 "--max-new-tokens", 600)
    assert result.exit_code == 1 and "leaves no room for a prompt" in result.output
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("raw, clean", [
    ("요약\ufffd입니다.", "요약입니다."),
    ("두 사람은\x05 등산을\x00 이야기했다\x7f.", "두 사람은 등산을 이야기했다."),
    ("C1\x85 문자와\x9f 탭\t줄바꿈\n", "C1 문자와 탭 줄바꿈"),
    ("Hangul 한글, Latin ABC, 숫자 123, 구두점 !?.,()~", "Hangul 한글, Latin ABC, 숫자 123, 구두점 !?.,()~"),
])
def test_postprocess_removes_replacement_and_control_characters(raw, clean):
    assert postprocess(raw) == clean


def test_infer_prints_what_it_loaded_and_no_library_noise(tiny_model, tmp_path):
    """The real command in its own process (library warnings fire at import time): only our own lines."""
    script = Path(sys.executable).with_name("tools")
    out = tmp_path / "result.json"
    result = subprocess.run([str(script), "infer", "--no-progress", "--threads", "1", "--ckpt", str(tiny_model),
                             "--input", str(TEST), "--output", str(out), "--max-new-tokens", "4"],
                            env=offline_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = (result.stderr + result.stdout).strip().splitlines()
    assert lines[0] == f"loaded model {tiny_model}, no adapter, float32 on cpu, hf backend"
    assert [line.split(":")[0].split(" ")[0] for line in lines[1:]] == ["wrote", "examples", "generation", "prompts"]


@pytest.mark.parametrize("args, expected", [
    (["--device", "gpu"], "--device gpu: not a device; use auto, cpu, cuda or cuda:N"),
    (["--output", "{tmp}/o.jsonl"], "the submission is one JSON list, not JSONL; name the file .json"),
    (["--output", "{tmp}/o.json", "--num-candidates", "2"], "candidates are JSONL, one row per dialogue"),
])
def test_infer_mistakes(tiny_model, tmp_path, args, expected):
    args = [arg.format(tmp=tmp_path) for arg in args]
    if "--output" not in args:
        args += ["--output", str(tmp_path / "r.json")]
    message = one_line_error(tools_cli("infer", "--ckpt", tiny_model, "--input", TEST, *args))
    assert expected in message
    assert not any(tmp_path.iterdir())  # nothing written
