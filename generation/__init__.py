"""The generation engine behind `tools infer`, usable in-process (demo, checkpoint selection, notebooks).

Modules, each usable alone:

* :mod:`generation.checkpoints` — what ``--ckpt`` is: a full checkpoint dir, a PEFT/Axolotl LoRA adapter
  dir, or a hub id; its tokenizer and dtype.
* :mod:`generation.decoding` — decoding settings, seeded per-row sampling, stop tokens, decoding token
  ids to the final text (shared by both backends).
* :mod:`generation.jobs` — prompts rendered to token ids (one :class:`~generation.jobs.Job` per dialogue)
  and the :class:`~generation.jobs.Engine` interface.
* :mod:`generation.hf` / :mod:`generation.vllm` — the two engines; :mod:`generation.loader` picks one.
* :mod:`generation.sidecar` — ``<output>.partial.jsonl``: finished results, so a killed run resumes.
* :mod:`generation.batching` — how dialogues are grouped into generate calls: a token budget over
  length-sorted prompts (``--max-batch-tokens``), an optional dialogue cap, halved on out-of-memory.
* :mod:`generation.runner` — the batch loop with its out-of-memory back-off, the sidecar, and the
  final submission (or candidates) file written atomically.

Example::

    from dataset_builders.nikl import load_nikl
    from dataset_builders.prompt import PromptBuilder
    from generation.decoding import Decoding
    from generation.loader import load_engine
    from generation.runner import run_to_file

    engine = load_engine("outputs/exaone-lora", Decoding(max_new_tokens=512))
    builder = PromptBuilder(tokenizer=engine.tokenizer)
    report = run_to_file(engine, load_nikl("일상대화요약_dev.json"), builder, "dev_pred.json")
"""
