"""tools/cli.py: what the terminal cannot show is printed as ? (a legacy encoding), the files are still UTF-8."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from helpers import DEV
from tools.cli import cli


# --------------------------------------------------------------------------- a terminal in a legacy encoding


@pytest.mark.parametrize("command", [
    ["score", "--predictions", DEV, "--input", DEV, "--metrics", "rouge1", "--report", "{tmp}/report.json"],
    ["compare", "--input", DEV, DEV, DEV, "--report", "{tmp}/compare"],
])
def test_a_legacy_terminal_encoding_prints_and_writes(tmp_path, command):
    """`LANG=ko_KR.EUC-KR` (or PYTHONIOENCODING=euc-kr): what the terminal cannot show (—, −) is printed as ?,
    and every file is written."""
    args = [str(arg).format(tmp=tmp_path) for arg in command]
    result = CliRunner(charset="euc-kr").invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "?" in result.output and "wrote" in result.output
    assert (tmp_path / "report.json").is_file() or (tmp_path / "compare" / "report.html").is_file()
