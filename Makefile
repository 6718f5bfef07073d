# Two set-up commands: `make test` and `make demo`. Each creates .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is installed first, pinned, so no dependency pulls another build. On PyPI, torch==2.13.0 for Linux is
# the CUDA build (several GB): for the CPU build set TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (this project's CI machines find a CPU wheel on local disk and need nothing).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_INDEX_ARG := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist), a test file each at a time, the files that run Axolotl handed out first; each
# Axolotl run is made once and shared by both workers (tests/conftest.py, README "Tests"). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
DEMO_WORKDIR ?= demo_out
GPU_BENCH_OUT ?= bench_out/gpu

# The offline environment of tests and demo is set by tests/conftest.py and `tools demo` (common/env.py).
# DeepSpeed installs without compiling its CUDA ops.
export DS_BUILD_OPS := 0

GPU_TORCH_INDEX ?= https://download.pytorch.org/whl/cu128

.PHONY: install install-gpu test demo bench bench-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_INDEX_ARG) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# A GPU machine: the CUDA build of torch asked for explicitly (pip may prefer a CPU wheel otherwise), then the
# gpu extra (flash-attn, DeepSpeed, vLLM in the checked range), then a check that torch sees a GPU.
install-gpu: $(STAMP)
	$(PY) -m pip install --quiet --force-reinstall --index-url $(or $(TORCH_INDEX),$(GPU_TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[gpu]"
	$(PY) -c "import torch; assert torch.cuda.is_available(), f'torch {torch.__version__} sees no CUDA GPU'; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/tools demo --workdir $(DEMO_WORKDIR)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# One CUDA GPU, ≤ 8 minutes on an H100: EXAONE-7.8B-shaped generation and training throughput (docs/gpu_benchmarks.md).
bench-gpu: $(STAMP)
	$(PY) benchmarks/gpu_bench.py --out $(GPU_BENCH_OUT)

clean:
	rm -rf $(VENV) $(DEMO_WORKDIR)
