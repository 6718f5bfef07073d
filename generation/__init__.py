"""The generation engine behind `tools infer`, usable in-process (demo, checkpoint selection, notebooks).

The way in is :mod:`generation.pipeline`: :class:`~generation.pipeline.Inference` resolves a checkpoint once and
writes an output file from NIKL examples — one lock, one batch decision per run — which is what `tools infer` and
`tools select-checkpoint` run. Its parts, each usable alone:

* :mod:`generation.options` — :class:`~generation.options.InferenceOptions`, every loading, prompt and batching
  option defined once (the command-line options are made from its fields).
* :mod:`generation.checkpoints` — what ``--ckpt`` is: a full checkpoint dir, a PEFT/Axolotl LoRA adapter
  dir, or a hub id; its tokenizer and dtype.
* :mod:`generation.decoding` — decoding settings, seeded per-row sampling, stop tokens, decoding token
  ids to the final text (shared by both backends).
* :mod:`generation.jobs` — prompts rendered to token ids (one :class:`~generation.jobs.Job` per dialogue)
  and the :class:`~generation.jobs.Engine` interface.
* :mod:`generation.hf` / :mod:`generation.vllm` — the two engines; :mod:`generation.loader` loads a resolved
  checkpoint on one.
* :mod:`generation.sidecar` — ``<output>.partial.jsonl``: finished results, so a killed run resumes; and
  ``<output>.lock``, so two runs never write one output.
* :mod:`generation.batching` — how dialogues are grouped into generate calls: a token budget over
  length-sorted prompts (``--max-batch-tokens``), an optional dialogue cap, halved on out-of-memory.
* :mod:`generation.runner` — the batch loop with its out-of-memory back-off, the sidecar, and the
  final submission (or candidates) file written atomically.

Example::

    from dataset_builders.nikl import load_nikl
    from generation.pipeline import Decoding, Inference

    report = Inference.resolve("outputs/exaone-lora", Decoding(max_new_tokens=512)).write(
        load_nikl("일상대화요약_dev.json"), "dev_pred.json")
"""
