"""Training: what runs the recipes besides Axolotl itself — the CPU overlay, the multi-process rehearsal and its
checks, `tools check-data`, the Axolotl plugins the recipes name, and choosing the checkpoint afterwards."""
