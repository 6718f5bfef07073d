"""The parts of the GPU benchmark; ``benchmarks/gpu_bench.py`` is the entry point and says what it measures.

Each module imports only modules listed before it, and none imports the entry point: ``shapes``,
``workload``, ``flops``, ``timing``, ``generation_phase``, ``vllm_phase``, ``training``, ``report``.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
