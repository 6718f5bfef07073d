"""EXAONE 3.x checkpoints: the hub layout, conversion to and from the Llama layout, and tiny test checkpoints."""
