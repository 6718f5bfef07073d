"""The demo pipeline (`make demo`, `tools demo`): every stage of the GPU pipeline on CPU, on a task a tiny model
learns, with the stage runner and the learning lines it ends with."""
