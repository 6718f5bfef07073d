"""training/axolotl_cli.py: `axolotl preprocess` + `axolotl train` in one process, exactly the documented two
commands."""

import sys


def test_the_one_process_axolotl_run_is_the_documented_two_commands():
    """training/axolotl_cli.py (the demo's and the recipe tests' trainings) runs exactly the `axolotl preprocess`
    + `axolotl train --launcher python` that docs/recipes.md's CPU block runs as two commands."""
    from helpers import REPO
    from training.axolotl_cli import commands

    line = next(line for line in (REPO / "docs" / "recipes.md").read_text(encoding="utf-8").splitlines()
                if line.startswith("axolotl preprocess configs/"))
    written = [part.split()[1:] for part in line.split("#")[0].split("&&")]
    config = written[0][1]
    assert commands(config, []) == written
    assert commands(config, ["--max_steps=2"]) == [args + ["--max_steps=2"] for args in written]


def test_the_one_process_axolotl_run_fails_loudly_without_a_config(tmp_path):
    import subprocess

    result = subprocess.run([sys.executable, "-m", "training.axolotl_cli"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode != 0 and "usage: python -m training.axolotl_cli CONFIG" in result.stderr
