"""Upper bounds of the numeric options: far above any sensible value, far below what would crash or exhaust memory.
Here, below every package, so that the command line (tools/options.py) and the library's own option definitions
(:class:`generation.options.InferenceOptions`) bound a value alike."""

MAX_TOKENS = 1 << 24          # a sequence: prompt, summary, context (the largest models today: ~10^6 positions)
MAX_BATCH_TOKENS = 1 << 30    # one generate call's token budget
MAX_ROWS = 1 << 16            # dialogues or pairs in one batch; candidates per dialogue; pairs per prompt
MAX_STEPS = 10_000_000        # training steps
