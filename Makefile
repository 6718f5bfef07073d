# Two set-up commands: `make test` and `make demo`. Each creates .venv on first use.
# Python 3.12 with Axolotl 0.21 is the default (.python-version says 3.12 to pyenv and uv alike). Python 3.11
# gets Axolotl 0.19, the last line that installs there: make test PYTHON=python3.11 VENV=.venv-py311
PYTHON ?= python3.12
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The exact versions the suite passed with, per Python (constraints/lock.py says why; `make lock` rewrites them).
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
LOCK := constraints/py$(PYVER).txt
VLLM_LOCK := constraints/vllm-py$(PYVER).txt
LOCK_ARG := $(if $(wildcard $(LOCK)),-c $(LOCK),)
VLLM_LOCK_ARG := $(if $(wildcard $(VLLM_LOCK)),-c $(VLLM_LOCK),)
# torch is installed first, pinned, so no dependency pulls another build. torch==2.13.0 from PyPI is, on Linux,
# the CUDA build (~2.6 GB; it runs on CPU too). For the small CPU build: TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (this project's CI machines find a CPU wheel for Python 3.11 on local disk).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_INDEX_ARG := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
# install-gpu: where the CUDA build of torch comes from when the installed torch has none. Empty: PyPI (its Linux
# wheel is built for CUDA 13.0, driver >= 580); older drivers: GPU_TORCH_INDEX=https://download.pytorch.org/whl/cu128
GPU_TORCH_INDEX ?=
# What the GPU extras may not move: they are resolved with these packages pinned at their installed versions.
STACK_PINS := torch|transformers|axolotl|trl|peft|accelerate|datasets|tokenizers|numpy
CONSTRAINTS := $(VENV)/stack-constraints.txt
VLLM_VENV ?= .venv-vllm
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist), a test file each at a time, the files that run Axolotl handed out first; each
# Axolotl run is made once and shared by both workers (tests/conftest.py, docs/development.md). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
DEMO_WORKDIR ?= demo_out
GPU_BENCH_OUT ?= bench_out/gpu

# The offline environment of tests and demo is set by tests/conftest.py and `tools demo` (common/env.py).
# DeepSpeed installs without compiling its CUDA ops (they are built on first use on the GPU machine).
export DS_BUILD_OPS := 0

.PHONY: install install-gpu install-vllm check-gpu-deps lock test demo bench bench-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml $(wildcard $(LOCK))
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: Python 3.12 is the default (pyenv install 3.12, or uv python install 3.12); for 3.11: make PYTHON=python3.11 VENV=.venv-py311"; exit 1; }
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print(sys.version_info[:2])')" != "$$($(PYTHON) -c 'import sys; print(sys.version_info[:2])')" ]; then \
		echo "$(VENV) was made with another Python than $(PYTHON): making it again"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_INDEX_ARG) "$(TORCH_SPEC)"
	@test -f $(LOCK) || echo "warning: no $(LOCK): installing the newest versions pyproject.toml admits (make lock writes one)"
	$(PY) -m pip install --quiet $(LOCK_ARG) -e ".[dev]"
	$(PY) -m pip check
	touch $(STAMP)

$(CONSTRAINTS): $(STAMP)
	$(PY) -m pip freeze | grep -iE '^($(STACK_PINS))==' > $@

# A GPU machine, in the order Axolotl's own install gives: torch with CUDA, then flash-attn and DeepSpeed built
# against it (no build isolation: their builds import torch), with the stack above pinned, so nothing already
# installed is replaced; then `pip check`. vLLM goes into its own environment (install-vllm). Ends with one line
# per component.
install-gpu: $(CONSTRAINTS)
	@if $(PY) -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)'; then echo "torch: the installed build has CUDA: kept"; \
	else echo "torch: a CPU build: replacing torch alone by the CUDA build"; \
		$(PY) -m pip uninstall --quiet -y torch && \
		$(PY) -m pip install --quiet $(if $(GPU_TORCH_INDEX),--index-url $(GPU_TORCH_INDEX),) "$(TORCH_SPEC)" && \
		$(PY) -m pip freeze | grep -iE '^($(STACK_PINS))==' > $(CONSTRAINTS); fi
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) packaging psutil ninja wheel setuptools
	$(PY) -m pip install --quiet --no-build-isolation -c $(CONSTRAINTS) $(LOCK_ARG) -e ".[gpu]"
	$(PY) -m pip check
	$(MAKE) install-vllm
	$(VENV)/bin/tools versions

# vLLM pins its own transformers (and more) where Axolotl pins another; measured with pip's resolver, the two
# cannot share one environment without replacing packages of Axolotl's (docs/install.md, "GPU set-up"). So: its own venv,
# the same Python and torch, this project without the `train` extra. `tools infer --backend vllm` started from
# $(VENV) runs itself again there.
install-vllm:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found"; exit 1; }
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet $(if $(GPU_TORCH_INDEX),--index-url $(GPU_TORCH_INDEX),$(TORCH_INDEX_ARG)) "$(TORCH_SPEC)"
	$(VLLM_VENV)/bin/python -m pip freeze | grep -iE '^torch==' > $(VLLM_VENV)/torch-constraint.txt
	$(VLLM_VENV)/bin/python -m pip install --quiet -c $(VLLM_VENV)/torch-constraint.txt $(VLLM_LOCK_ARG) -e ".[vllm]"
	$(VLLM_VENV)/bin/python -m pip check

# What install-gpu would add, resolved by pip without installing anything (no GPU needed; CI runs it): the gpu
# extra against this venv's torch and Axolotl, and the vLLM environment from scratch with this torch. Fails when
# either cannot be resolved; names the versions that would be installed.
check-gpu-deps: $(CONSTRAINTS)
	$(PY) -m pip install --quiet --dry-run --no-build-isolation -c $(CONSTRAINTS) $(LOCK_ARG) --report $(VENV)/gpu-resolve.json -e ".[gpu]"
	grep -iE '^torch==' $(CONSTRAINTS) > $(VENV)/torch-constraint.txt
	$(PY) -m pip install --quiet --dry-run --ignore-installed -c $(VENV)/torch-constraint.txt $(VLLM_LOCK_ARG) --report $(VENV)/vllm-resolve.json -e ".[vllm]"
	$(VENV)/bin/tools versions --resolved $(VENV)/gpu-resolve.json --resolved $(VENV)/vllm-resolve.json

# Rewrites $(LOCK) and $(VLLM_LOCK) from a fresh resolution in a scratch venv (a few minutes; then run make test).
lock:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet --upgrade pip
	$(VENV)-lock/bin/python -m pip install --quiet $(TORCH_INDEX_ARG) "$(TORCH_SPEC)"
	$(VENV)-lock/bin/python constraints/lock.py
	rm -rf $(VENV)-lock

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/tools demo --workdir $(DEMO_WORKDIR)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# One CUDA GPU, ≤ 8 minutes on an H100: EXAONE-7.8B-shaped generation and training throughput (docs/benchmarks.md).
bench-gpu: $(STAMP)
	$(PY) benchmarks/gpu_bench.py --out $(GPU_BENCH_OUT)

clean:
	rm -rf $(VENV) $(DEMO_WORKDIR)
