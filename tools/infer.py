"""`tools infer`: batched, resumable generation → the submission JSON (or sampled candidates JSONL).

The engine lives in :mod:`generation`; this is only the command line.
"""

from __future__ import annotations

from pathlib import Path

import click

from generation.loader import BACKENDS
from tools.options import clean_option, input_option, prompt_budget_option, system_prompt_option

DTYPES = ("auto", "float32", "bfloat16", "float16")


@click.command("infer")
@click.option("--ckpt", required=True,
              help="Full checkpoint dir, LoRA adapter dir (Axolotl/PEFT output) or hub id.")
@input_option
@click.option("--output", "output_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Submission JSON to write (atomically); with --num-candidates a JSONL of candidates.")
@click.option("--base-model", default=None, help="Base model of a LoRA adapter (default: from adapter_config.json).")
@click.option("--merge-lora", is_flag=True, help="Merge a LoRA adapter into the base weights before generating.")
@click.option("--backend", type=click.Choice(BACKENDS), default="hf", show_default=True,
              help="vllm needs the `gpu` extra; same output format.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the checkpoint's own code to run.")
@system_prompt_option
@clean_option
@prompt_budget_option("the model's context minus --max-new-tokens")
@click.option("--max-new-tokens", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Longest summary, in tokens (the reference system's setting).")
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Dialogues per generate call, halved automatically on CUDA out-of-memory  "
                   "[default: 16; vllm: 256 per call, it schedules its own batches]")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True,
              help="auto: bfloat16 on CUDA, float32 on CPU.")
@click.option("--device", default="auto", show_default=True, help="auto: cuda if available, else cpu.")
@click.option("--num-candidates", type=click.IntRange(min=1), default=None,
              help="Sample N summaries per dialogue and write JSONL {id, candidates} instead of a submission.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Sampling temperature (with --num-candidates)  [default: 1.0]")
@click.option("--top-p", type=click.FloatRange(0, 1), default=None,
              help="Nucleus sampling mass (with --num-candidates)  [default: 1.0]")
@click.option("--seed", type=int, default=None,
              help="Sampling seed (with --num-candidates); each dialogue's candidates depend only on it and "
                   "the dialogue id  [default: 0]")
@click.option("--restart", is_flag=True, help="Discard the results sidecar of an earlier run instead of resuming.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar (examples/s).")
def infer(ckpt, input_path, output_path, base_model, merge_lora, backend, trust_remote_code, system_prompt,
          clean_rules, max_prompt_tokens, max_new_tokens, batch_size, dtype, device, num_candidates, temperature,
          top_p, seed, restart, progress):
    """Generate summaries for a NIKL file: the leaderboard submission JSON, or sampled candidates.

    Results are appended to OUTPUT.partial.jsonl as they finish; re-running the same command after a
    crash resumes where it stopped. The sidecar is removed once OUTPUT is written.

    \b
    Examples:
      tools infer --ckpt outputs/exaone-lora --input 일상대화요약_test.json --output result.json
      tools infer --ckpt outputs/exaone-lora/merged --input 일상대화요약_train.json \\
          --output candidates/train.jsonl --num-candidates 8 --temperature 0.8 --top-p 0.95 --seed 0
    """
    from dataset_builders.nikl import load_nikl
    from dataset_builders.prompt import PromptBuilder
    from generation.decoding import Decoding
    from generation.loader import load_engine
    from generation.runner import prompt_budget, run_to_file

    sampling_flags = {"--temperature": temperature, "--top-p": top_p, "--seed": seed}
    if num_candidates is None and any(value is not None for value in sampling_flags.values()):
        given = ", ".join(name for name, value in sampling_flags.items() if value is not None)
        raise click.UsageError(f"{given} only apply with --num-candidates (default decoding is greedy)")
    decoding = Decoding(max_new_tokens=max_new_tokens, num_candidates=num_candidates,
                        temperature=1.0 if temperature is None else temperature,
                        top_p=1.0 if top_p is None else top_p, seed=0 if seed is None else seed)
    examples = load_nikl(input_path)
    if not progress:  # no weight-loading bars either
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    engine = load_engine(ckpt, decoding, backend=backend, base_model=base_model, merge_lora=merge_lora,
                         dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    budget = prompt_budget(engine.context_length, max_new_tokens, max_prompt_tokens)
    builder = PromptBuilder(system_prompt=system_prompt, clean_rules=clean_rules, tokenizer=engine.tokenizer,
                            max_prompt_tokens=budget)
    if batch_size is None:
        batch_size = 256 if backend == "vllm" else 16
    report = run_to_file(engine, examples, builder, output_path, batch_size=batch_size, restart=restart,
                         progress=progress)
    click.echo(f"wrote {output_path}")
    for line in report.summary():
        click.echo(line)
