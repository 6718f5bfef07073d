"""`tools compare` at the dev split's full size, on systems whose true differences we know.

The references are the full-size synthetic dev split (102 dialogues, `tools build-synthetic-data`). The
"systems" are the references damaged in known ways, so the report can be checked against the truth:

- ``drop 20 %`` and ``drop 20 % again``: every word dropped with probability 0.2 (two different seeds) — the
  same quality, different luck: the pair should be *not distinguishable*;
- ``drop 25 %``: a little worse;
- ``first 60 %``: the first 60 % of the words — much worse, and short (the length pictures show it).

It times the whole command (load, ROUGE-1/2/L of 4 × 102 summaries, 6 pairs × 3 metrics of sign-flip tests and
bootstrap intervals of 10,000 resamples, pictures, HTML) and those statistics alone, and leaves the report in
``--out`` (the picture in docs/compare.md is its ``differences.png``).

It then shows why the verdicts come from a sign-flip test and not from the bootstrap: ``k`` of 102 examples
changed, all by +10 points, the rest equal — the percentile bootstrap's p (as `tools compare` computed it
before: twice the share of resampled means on the other side of 0, with the +1) against the exact sign-flip
p, ``2/2^k``. Run: ``python benchmarks/compare_example.py --out bench_out/compare``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import markdown  # noqa: E402
from dataset_builders.synthetic import write_split  # noqa: E402

SYSTEMS = {"drop 20 %": ("drop", 0.2, 1), "drop 20 % again": ("drop", 0.2, 2), "drop 25 %": ("drop", 0.25, 3),
           "first 60 %": ("head", 0.6, 0)}


def damaged(text: str, how: str, amount: float, rng: random.Random) -> str:
    words = text.split()
    if how == "head":
        return " ".join(words[: max(1, round(len(words) * amount))])
    return " ".join(word for word in words if rng.random() >= amount) or words[0]


def write_systems(references: Path, out: Path) -> list[Path]:
    items = json.loads(references.read_text(encoding="utf-8"))
    paths = []
    for name, (how, amount, seed) in SYSTEMS.items():
        rng = random.Random(seed)
        path = out / "systems" / (name.replace(" %", "").replace(" ", "_") + ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([{**item, "output": damaged(item["output"], how, amount, rng)} for item in items],
                                   ensure_ascii=False), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    from click.testing import CliRunner

    import numpy as np

    from eval.compare.statistics import bootstrap_intervals, bootstrap_means, compare_pair, sign_flip_p
    from tools.cli import cli

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out/compare"))
    parser.add_argument("--resamples", type=int, default=10_000)
    args = parser.parse_args(argv)
    dev = write_split(args.out / "data", "dev")
    systems = write_systems(dev, args.out)
    names = [option for name in SYSTEMS for option in ("--name", name)]
    command = ["compare", "--input", str(dev), *map(str, systems), *names, "--report", str(args.out / "report"),
               "--resamples", str(args.resamples)]
    start = time.perf_counter()
    result = CliRunner().invoke(cli, command)
    seconds = time.perf_counter() - start
    if result.exit_code != 0:
        print(result.output, file=sys.stderr)
        return 1
    columns = np.random.default_rng(0).normal(0, 5, (102, 18))
    start = time.perf_counter()
    bootstrap_intervals(columns, args.resamples)
    sign_flip_p(columns, args.resamples)
    statistics_seconds = time.perf_counter() - start
    data = json.loads((args.out / "report" / "compare.json").read_text(encoding="utf-8"))
    rows = [{"case": f"tools compare, 4 systems × {data['n']} dialogues, {args.resamples:,} resamples",
             "seconds": f"{seconds:.2f}"},
            {"case": f"sign-flip tests and bootstrap intervals alone, 18 columns × 102 examples × {args.resamples:,}",
             "seconds": f"{statistics_seconds:.2f}"}]
    print(markdown(rows))
    print()
    print(markdown([{"second − first": f"{pair['second']} − {pair['first']}",
                     "ROUGE-1 difference [95 %]": f"{pair['difference']:+.2f} [{pair['low']:+.2f}, {pair['high']:+.2f}]",
                     "p (Holm)": p_text(pair["p_adjusted"]), "verdict": pair["verdict"]}
                    for pair in data["pairs"] if pair["metric"] == "rouge1"]))
    print()
    few = []
    for k in (1, 4, 5, 6, 12):
        first = np.zeros(102)
        second = first.copy()
        second[:k] = 10.0
        means = bootstrap_means(second - first, args.resamples)[:, 0]
        bootstrap_p = min(1.0, 2 * (min((means <= 0).sum(), (means >= 0).sum()) + 1) / (args.resamples + 1))
        pair = compare_pair(first, second, names=("A", "B"), resamples=args.resamples)
        few.append({"changed of 102": k, "difference [95 %]": pair.interval_text(),
                    "bootstrap p (before)": p_text(bootstrap_p), "sign-flip p (exact)": p_text(pair.p_value),
                    "verdict": pair.verdict})
    print(markdown(few))
    print(f"\nreport: {args.out / 'report' / 'report.html'}")
    return 0


def p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


if __name__ == "__main__":
    sys.exit(main())
