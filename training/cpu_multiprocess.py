"""What stops Axolotl from training with several processes on a machine without GPUs, worked around.

`tools rehearse` runs a recipe as the GPU run does — ``torchrun --nproc_per_node N -m axolotl.cli.train`` — on
CPU. Stock Axolotl, accelerate and DeepSpeed assume a GPU at four places; :func:`apply` replaces each, in the
process it is called in (each rank calls it from the rehearsal's Axolotl plugin, before Axolotl reads the
config), and only where :func:`needed` says so: several processes and no GPU. On a GPU machine, or in a single
process, it changes nothing. What each one answers, measured: docs/rehearse.md.
"""

from __future__ import annotations

import os


def needed() -> bool:
    """Several processes (``WORLD_SIZE > 1``, as torchrun and accelerate set it) and no GPU visible to torch."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def apply(deepspeed: bool) -> list[str]:
    """Install the workarounds where :func:`needed`; returns what was installed (one phrase each; empty: none).
    ``deepspeed``: the run uses DeepSpeed (its fix imports DeepSpeed, which a DDP run does not need)."""
    if not needed():
        return []
    import accelerate.state
    import axolotl.cli.config
    import axolotl.utils.trainer

    # axolotl/utils/environment.py:39 probes CUDA peer access and catches only AssertionError ("no NVIDIA driver").
    axolotl.utils.trainer.check_cuda_p2p_ib_support = lambda: False
    installed = ["no CUDA peer-access probe"]

    # axolotl/utils/config/__init__.py:256 sets device_map {"": LOCAL_RANK} (= cuda:N) when WORLD_SIZE != 1.
    normalize_config = axolotl.cli.config.normalize_config

    def normalize_config_on_cpu(cfg):
        normalize_config(cfg)
        cfg.device_map = {"": "cpu"}

    axolotl.cli.config.normalize_config = normalize_config_on_cpu
    installed.append('device_map {"": "cpu"}')

    # accelerate/state.py:802 picks gloo only with cpu=True; else no backend: each rank trains alone (:287).
    prepare_backend = accelerate.state.PartialState._prepare_backend

    def prepare_gloo_backend(self, *args, **kwargs):
        backend, distributed_type = prepare_backend(self, *args, **kwargs)
        if backend is None:
            return "gloo", accelerate.state.DistributedType.MULTI_CPU
        return backend, distributed_type

    accelerate.state.PartialState._prepare_backend = prepare_gloo_backend
    installed.append("gloo process group")

    if deepspeed:
        import deepspeed.runtime.zero.stage_1_and_2 as zero_1_and_2
        import torch

        # deepspeed/runtime/utils.py:1013 gathers into views of a flat buffer in grad mode: gloo's in-place fill fails.
        all_gather_dp_groups = zero_1_and_2.all_gather_dp_groups

        def all_gather_without_grad(*args, **kwargs):
            with torch.no_grad():
                return all_gather_dp_groups(*args, **kwargs)

        zero_1_and_2.all_gather_dp_groups = all_gather_without_grad
        installed.append("ZeRO-1/2 parameter gather without autograd")
    return installed
