"""`axolotl preprocess CONFIG` then `axolotl train CONFIG --launcher python`, in one process.

Both go through Axolotl's own click CLI — the ``cli`` object its ``axolotl`` console script calls — with the
same arguments, so they do exactly what the two commands do; but Axolotl's start-up (importing it: ~10 s of a
~20 s `axolotl preprocess` of the demo's data on a 2-core CPU) is paid once per training instead of twice. The
demo's trainings (demo/pipeline.py) and the recipe tests' (tests/test_recipes.py) run through it:

    python -m training.axolotl_cli CONFIG [--key=value overrides, given to both commands]

A failing command raises, so the process ends with Axolotl's own traceback and a non-zero exit status.
"""

from __future__ import annotations

import sys


def commands(config: str, overrides: list[str]) -> list[list[str]]:
    """The two Axolotl command lines, as a user types them (without the leading ``axolotl``)."""
    return [["preprocess", config, *overrides], ["train", config, "--launcher", "python", *overrides]]


def preprocess_and_train(config: str, overrides: list[str]) -> None:
    from axolotl.cli.main import cli

    for args in commands(config, overrides):
        print("$ axolotl " + " ".join(args), flush=True)  # the command this step is, for the log
        sys.argv = ["axolotl", *args]  # what the console script would have seen
        cli.main(args=args, prog_name="axolotl", standalone_mode=False)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m training.axolotl_cli CONFIG [--key=value ...]")
    preprocess_and_train(sys.argv[1], sys.argv[2:])
