"""Compare prediction files on one reference file and write the report folder (`tools compare`).

:func:`compare_files` loads NIKL task files (the references, and each system's submission as `tools infer`
writes it), matches them by id and runs :func:`eval.compare.statistics.compare_systems`. :func:`write_report` writes,
each file atomically:

* ``compare.json`` — every number: settings, per-system means, every pair, every example's scores and lengths;
* ``compare.md`` — the systems and pairs tables, linking the pictures;
* ``distributions.png``, ``differences.png``, ``lengths.png``, ``score_vs_length.png`` — score distributions
  per system, per-example differences per pair with the interval, summary vs reference length, score vs
  relative length;
* ``report.html`` — all of it in one self-contained page, with the examples where the systems differ most.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from common.errors import UserError
from common.io import atomic_open, refuse_overwriting_inputs, write_json
from dataset_builders.nikl import Example, load_nikl
from dataset_builders.prompt import conversation_lines
from eval.compare.statistics import CONFIDENCE, RESAMPLES, SEED, Comparison, compare_systems
from eval.metrics import LABELS, align_by_id

REPORT_JSON, REPORT_MD, REPORT_HTML = "compare.json", "compare.md", "report.html"
PICTURES = ("distributions.png", "differences.png", "lengths.png", "score_vs_length.png")


def system_names(paths: Sequence[Path], names: Sequence[str] = ()) -> list[str]:
    """``names`` when given (one per file, distinct); else each file's stem, made distinct by its folder
    and then by a number (the same file given twice is two systems, ``dev`` and ``dev #2``)."""
    if names:
        if len(names) != len(paths):
            raise UserError(f"{len(names)} --name for {len(paths)} predictions files; give one per file, in order")
        repeated = [name for name, count in Counter(names).items() if count > 1]
        if repeated or not all(name.strip() for name in names):
            raise UserError(f"--name must be distinct and non-empty: {', '.join(map(repr, repeated or ['']))}")
        return list(names)
    stems = [path.stem for path in paths]

    def distinct_parents(stem: str) -> bool:
        return len({path.resolve().parent for path in paths if path.stem == stem}) > 1

    chosen = [f"{path.parent.name}/{path.stem}" if stems.count(path.stem) > 1 and distinct_parents(path.stem)
              else path.stem for path in paths]
    seen: Counter[str] = Counter()
    unique = []
    for name in chosen:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return unique


def load_systems(input_path: Path, prediction_paths: Sequence[Path], names: Sequence[str]
                 ) -> tuple[list[Example], list[str], dict[str, list[str]]]:
    """The reference examples, their ids' order, and each system's summaries in that order."""
    references = load_nikl(input_path, require_output="--input needs reference summaries to compare against, "
                                                       "e.g. 일상대화요약_dev.json; test files have none")
    systems = {}
    ids: list[str] = []
    for name, path in zip(names, prediction_paths):
        predicted = load_nikl(path)
        ids, texts, _ = align_by_id([(example.id, example.output) for example in predicted],
                                    [(example.id, example.output) for example in references], str(path), str(input_path))
        if not any(text.strip() for text in texts):
            raise UserError(f"{path}: all {len(texts)} predictions are empty — an unfinished run, or the input file "
                            "instead of a submission?")
        systems[name] = texts
    return references, ids, systems


def compare_files(input_path: Path | str, prediction_paths: Sequence[Path | str], names: Sequence[str] = (), *,
                  metrics: Sequence[str] = ("rouge1",), resamples: int = RESAMPLES, seed: int = SEED,
                  confidence: float = CONFIDENCE, progress: Callable[[str], None] = lambda message: None,
                  **score_options: Any) -> tuple[Comparison, list[Example], dict[str, str]]:
    """Compare the submissions in ``prediction_paths`` on the references of ``input_path``: the comparison,
    the reference examples (for the dialogues) and each system's file."""
    paths = [Path(path) for path in prediction_paths]
    if len(paths) < 2:
        raise UserError(f"give at least two predictions files to compare (got {len(paths)})")
    names = system_names(paths, names)
    references, ids, systems = load_systems(Path(input_path), paths, names)
    comparison = compare_systems([example.output for example in references], systems, ids=ids, metrics=metrics,
                                 resamples=resamples, seed=seed, confidence=confidence, progress=progress,
                                 **score_options)
    return comparison, references, {name: str(path) for name, path in zip(names, paths)}


def markdown(comparison: Comparison, title: str, sources: dict[str, str]) -> str:
    lines = [f"# {title}", "", f"{comparison.settings_line()}. {comparison.reading_line()}.", ""]
    lines += [line for note in comparison.notes() for line in (f"Note: {note}.", "")]
    skipped = [f"{LABELS.get(key, key)} not computed: {reason}." for key, reason in comparison.skipped.items()
               if reason != "not requested"]
    lines += [*skipped, ""] if skipped else []
    lines += ["## Systems", "", comparison.systems_table(), "",
              *(f"- {name}: `{path}`" for name, path in sources.items()), "",
              "## Pairs", "", comparison.pairs_table(), "", "## Pictures", ""]
    lines += [f"![{name}]({name})" for name in PICTURES]
    lines += ["", f"The examples where the systems differ most: [{REPORT_HTML}]({REPORT_HTML}).", ""]
    return "\n".join(lines)


def check_report_dir(directory: Path | str, inputs: Sequence[Path | str] = ()) -> Path:
    """The report folder, refused before any work when a file is in its place or when a file it would
    replace is one of the ``inputs``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--report {directory}: a file is in the way; give a directory")
    for name in (REPORT_JSON, REPORT_MD, REPORT_HTML, *PICTURES):
        refuse_overwriting_inputs({"--report": directory / name}, {"input": list(inputs)})
    return directory


def write_report(comparison: Comparison, directory: Path | str, *, title: str = "Comparison",
                 sources: dict[str, str] | None = None, dialogues: Sequence[str] | None = None,
                 examples: int = 5) -> list[Path]:
    """Write the report folder (see the module docstring); returns the files written."""
    from common.plots import write_png
    from eval.compare import page, plots

    directory = check_report_dir(directory)
    sources = sources or {}
    metric = comparison.primary
    label = LABELS[metric]
    images = {
        PICTURES[0]: (f"{label} per example, per system", plots.score_distributions(comparison, metric)),
        PICTURES[1]: (f"{label}: per-example differences of each pair, the {comparison.confidence:.0%} interval and "
                      "the verdict",
                      plots.pair_differences(comparison, metric)),
        PICTURES[2]: ("Summary length vs reference length", plots.summary_lengths(comparison)),
        PICTURES[3]: (f"{label} vs summary length relative to the reference", plots.score_by_length(comparison, metric)),
    }
    written = [write_png(directory / name, png) for name, (_, png) in images.items()]
    write_json(directory / REPORT_JSON, {**comparison.to_json(), "title": title, "files": sources})
    with atomic_open(directory / REPORT_MD) as file:
        file.write(markdown(comparison, title, sources))
    with atomic_open(directory / REPORT_HTML) as file:
        file.write(page.render(comparison, images, title=title, sources=sources, dialogues=dialogues,
                                      examples=examples))
    return [*written, directory / REPORT_JSON, directory / REPORT_MD, directory / REPORT_HTML]


def dialogue_texts(examples: Sequence[Example]) -> list[str]:
    """Each example's dialogue as the prompt shows it, one ``화자ID: utterance`` line per turn."""
    return ["\n".join(conversation_lines(example.conversation)) for example in examples]
