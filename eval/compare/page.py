"""One self-contained HTML page for a comparison (`tools compare`'s ``report.html``).

Everything is inside the file: the style sheet, the pictures (PNG as base64 ``data:`` URIs) and the text,
escaped — it opens offline, by double-click, and can be mailed as one attachment. No script, no font, no
link leaves the page.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Mapping, Sequence

from eval.compare.statistics import Comparison
from eval.metrics import LABELS

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans KR", sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.better { color: #176b1d; font-weight: 600; }
.same { color: #555; }
.note { color: #8a5a00; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
pre.dialogue { white-space: pre-wrap; background: #f7f7f7; padding: 0.6em; max-height: 18em; overflow: auto; }
section.example { border-top: 2px solid #ddd; margin-top: 1.5em; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(head: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]]) -> str:
    """``rows`` of ``(text, css class)`` cells; every text escaped."""
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(cell)}</th>" for cell in head) + "</tr>"]
    for row in rows:
        cells = "".join(f'<td class="{css}">{escape(text)}</td>' if css else f"<td>{escape(text)}</td>"
                        for text, css in row)
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def systems_section(comparison: Comparison, sources: Mapping[str, str]) -> str:
    metrics = comparison.metrics
    rows = [[(name, ""), (sources.get(name, ""), ""),
             *((f"{comparison.mean(name, key):.2f}", "num") for key in metrics),
             (f"{comparison.lengths(name).mean():.0f}", "num")] for name in comparison.systems]
    rows.append([("reference", "same"), ("", ""), *(("", "") for _ in metrics),
                 (f"{comparison.lengths().mean():.0f}", "num")])
    return "<h2>Systems</h2>\n" + _table(["system", "file", *(LABELS[key] for key in metrics), "mean chars"], rows)


def pairs_section(comparison: Comparison) -> str:
    styles = ("", "", "num", "num", "num")  # of every cell but the verdict's, which says whether it is one
    rows = [[*zip(comparison.pair_cells(pair)[:-1], styles),
             (pair.verdict, "better" if pair.distinguishable else "same")] for pair in comparison.pairs]
    return "<h2>Pairs</h2>\n" + _table(comparison.pairs_head(), rows)


def figures_section(images: Mapping[str, tuple[str, bytes]]) -> str:
    figures = [f'<figure><img src="{data_uri(png)}" alt="{escape(caption)}">'
               f"<figcaption>{escape(caption)}</figcaption></figure>" for caption, png in images.values()]
    return "<h2>Pictures</h2>\n" + "\n".join(figures)


def examples_section(comparison: Comparison, indices: Sequence[int], dialogues: Sequence[str] | None,
                     excerpt_chars: int) -> str:
    metric = comparison.primary
    out = [f"<h2>Where the systems differ most ({escape(LABELS[metric])})</h2>"]
    if not indices:
        out.append('<p class="same">Every system scores the same on every example.</p>')
    for index in indices:
        values = [comparison.scores[name][metric][index] for name in comparison.systems]
        out.append(f'<section class="example"><h3>{escape(comparison.ids[index])} — spread '
                   f"{max(values) - min(values):.2f} points</h3>")
        if dialogues is not None:
            text = dialogues[index]
            cut = text if len(text) <= excerpt_chars else text[:excerpt_chars].rstrip() + " …"
            out.append(f'<pre class="dialogue">{escape(cut)}</pre>')
        rows = [[("reference", "same"), ("", ""), (f"{len(comparison.references[index])}", "num"),
                 (comparison.references[index], "")]]
        rows += [[(name, ""), (f"{comparison.scores[name][metric][index]:.2f}", "num"),
                  (f"{len(comparison.systems[name][index])}", "num"), (comparison.systems[name][index], "")]
                 for name in comparison.systems]
        out.append(_table(["", LABELS[metric], "chars", "summary"], rows))
        out.append("</section>")
    return "\n".join(out)


def render(comparison: Comparison, images: Mapping[str, tuple[str, bytes]], *, title: str,
           sources: Mapping[str, str] | None = None, dialogues: Sequence[str] | None = None,
           examples: int = 5, excerpt_chars: int = 800) -> str:
    """The page: settings, the systems and pairs tables, the pictures (``images``: name → caption, PNG),
    and the ``examples`` examples where the systems' scores differ most (dialogue excerpt, reference,
    every system's summary)."""
    notes = [f"<p>{escape(comparison.settings_line())}. {escape(comparison.reading_line())}.</p>"]
    notes += [f'<p class="note">Note: {escape(note)}.</p>' for note in comparison.notes()]
    notes += [f'<p class="same">{escape(LABELS.get(key, key))} not computed: {escape(reason)}</p>'
              for key, reason in comparison.skipped.items() if reason != "not requested"]
    body = [f"<h1>{escape(title)}</h1>", *notes, systems_section(comparison, sources or {}),
            pairs_section(comparison), figures_section(images)]
    if examples:
        body.append(examples_section(comparison, comparison.most_different(examples), dialogues, excerpt_chars))
    return ("<!DOCTYPE html>\n<html lang=\"ko\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
