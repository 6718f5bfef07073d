"""The `tools` CLI and the runtime pieces behind it (tiny model builder, inference)."""

from common.devices import let_waiting_threads_sleep

# Before any command imports torch, whose OpenMP runtime reads this once: on a busy machine, threads that spin
# while they wait made the default thread count slower than one thread (common/devices.py).
let_waiting_threads_sleep()
