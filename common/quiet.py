"""Silence the library messages that are known to be irrelevant here — narrowly, by logger and message.

Each entry is one message a dependency prints on every run although nothing is wrong for our use; every
other warning still shows. Installed once, at the entry point of the ``tools`` command (before the heavy
libraries are imported, since several of them speak at import time).
"""

from __future__ import annotations

import logging
import re
import warnings

# (logger name, message pattern, why it is irrelevant)
KNOWN_LOG_NOISE = (
    ("torchao", r"^Failed to load .*\.so",
     "torchao's optional CUDA kernels (mxfp8, cutlass) do not load with a CPU torch; nothing here uses them"),
    ("torch.utils._pytree", r"register_constant\(\) on Enum subclasses is deprecated",
     "a deprecation inside torchao's import, not in our code"),
    ("DeepSpeed", r"^Setting accelerator to CPU",
     "DeepSpeed saying a CPU machine has no GPU; inference and scoring do not use DeepSpeed"),
    ("bitsandbytes.backends.cpu.ops", r"^Failed to load CPU gemm_4bit_forward from kernels-community",
     "an optional hub kernel for 4-bit CPU matmuls; offline it cannot be fetched and is not needed"),
    ("kernels.hf_hub", r"^Skipping publisher trust check for 'kernels-community",
     "the same optional bitsandbytes kernel, in offline mode (logged when `tools check-data` imports Axolotl)"),
)
KNOWN_WARNINGS = (
    (UserWarning, r"Skipping publisher trust check for 'kernels-community",
     "the same optional bitsandbytes kernel, in offline mode"),
)


class _DropMatching(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


_installed = False


def silence_known_noise() -> None:
    """Install the filters (idempotent)."""
    global _installed
    if _installed:
        return
    for name, pattern, _why in KNOWN_LOG_NOISE:
        logging.getLogger(name).addFilter(_DropMatching(pattern))
    for category, pattern, _why in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    _installed = True
