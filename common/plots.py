"""Pictures of what the tables hold, for a person who would rather look than read: matplotlib on the Agg backend,
with a Korean font when one is installed, written as 800×450 PNG files (atomically)."""

from __future__ import annotations

import io
import textwrap
import warnings
from pathlib import Path
from typing import Any, Sequence

from common.io import atomic_open

SIZE_INCHES, DPI = (8, 4.5), 100  # an 800×450 pixel image


# Fonts with Hangul, for system names in Korean; the first one installed is used (else names show as boxes —
# the tables always carry them).
KOREAN_FONTS = ("Noto Sans CJK KR", "Noto Sans KR", "NanumGothic", "Malgun Gothic", "AppleGothic", "UnDotum")


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), with a Korean font when one is installed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib import pyplot as plt

    installed = {font.name for font in font_manager.fontManager.ttflist}
    korean = [name for name in KOREAN_FONTS if name in installed]
    if korean:
        plt.rcParams["font.family"] = [korean[0], "DejaVu Sans"]
    return plt


def png_bytes(figure: Any) -> bytes:
    """The figure as PNG bytes (800×450 at the default size); the figure is closed. Characters the font lacks
    are drawn as boxes without a warning per character."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=DPI)
    pyplot().close(figure)
    return buffer.getvalue()


def write_png(path: Path | str, data: bytes) -> Path:
    """Write PNG bytes atomically."""
    path = Path(path)
    with atomic_open(path) as file:  # a text handle: write the bytes through its buffer
        file.flush()
        file.buffer.write(data)
    return path
