"""dataset_builders/synthetic.py and `tools build-synthetic-data`: the full-size synthetic set has the real splits'
shape."""

from __future__ import annotations

import json
import statistics

from dataset_builders.synthetic import SIZES, make_split
from helpers import load_json, tools_cli


def test_synthetic_set_has_the_real_shape():
    for split, size in SIZES.items():
        data = make_split(split)
        assert len(data) == size and len({item["id"] for item in data}) == size
        chars = [sum(len(turn["utterance"]) for turn in item["input"]["conversation"]) for item in data]
        keywords = [len(item["input"]["subject_keyword"]) for item in data]
        assert min(keywords) >= 1 and max(keywords) <= 6
        assert {len({turn["speaker"] for turn in item["input"]["conversation"]}) for item in data} <= {1, 2}
        if split == "test":
            assert all(item["output"] == "" for item in data)
            assert 1900 < statistics.median(chars) < 2300 and max(chars) > 5000  # real: median 2109, max 6296
        else:
            assert all(185 <= len(item["output"]) <= 731 for item in data)
            assert 2200 < statistics.median(chars) < 2700  # real dev: 2449
    text = json.dumps(make_split("train"), ensure_ascii=False)
    for quirk in ("name1", "xx", "어~", "&company-name&", "&address&"):
        assert quirk in text
    assert '"utterance": ""' in text  # empty utterances, as in the real train split
    assert make_split("dev") == make_split("dev") != make_split("dev", seed=1)  # seeded


def test_build_synthetic_data_writes_the_splits_asked_for(tmp_path):
    result = tools_cli("build-synthetic-data", "--output-dir", tmp_path / "s", "--split", "test", "--seed", 3)
    assert result.exit_code == 0, result.output
    assert [path.name for path in (tmp_path / "s").iterdir()] == ["일상대화요약_test.json"]
    assert load_json(tmp_path / "s" / "일상대화요약_test.json") == make_split("test", seed=3)
    assert result.output.startswith(f"wrote {tmp_path / 's' / '일상대화요약_test.json'}: 408 dialogues; chars per "
                                    "dialogue p0/10/50/90/99/100 ")
    (tmp_path / "file").write_text("")
    result = tools_cli("build-synthetic-data", "--output-dir", tmp_path / "file")
    assert result.exit_code == 2 and "is a file" in result.output
