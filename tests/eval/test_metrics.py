"""BERTScore and BLEURT on tiny random models built here, checked against direct computations:
BERTScore against greedy cosine matching written out with torch, our BLEURT class against
transformers' own RemBERT / BERT implementations carrying the same weights."""

import json

import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F

from eval.bertscore import BertScorer, default_layer
from eval.bleurt import BleurtForSequenceClassification, BleurtScorer, PairEncoder
from eval.metrics import MetricUnavailable, pair_scorer
from helpers import DEV, load_json, tiny_bleurt
from tools.cli import cli


PREDICTIONS = ["두 사람은 시험 이야기를 했다.", "SD2100503은 COVID-19 때문에 Zoom으로 수업을 들었다!!", "김장을 했다."]
REFERENCES = ["두 사람은 영어 학원 이야기를 했다.", "sd2100503은 covid 19 때문에 zoom 수업을 들었다.", "수육을 삶아 먹었다."]


# ---- BERTScore ----------------------------------------------------------------------------------------


def direct_bertscore(directory, layer, prediction, reference):
    """BERTScore F1 written out: cosine of layer-``layer`` states, each token's best match; [CLS] and
    [SEP] can be matched but carry no weight of their own (bert_score with idf off)."""
    from transformers import AutoTokenizer, BertModel

    tokenizer, model = AutoTokenizer.from_pretrained(directory), BertModel.from_pretrained(directory).eval()

    def states(text):
        with torch.no_grad():
            output = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True)
        return F.normalize(output.hidden_states[layer][0], dim=-1)

    similarity = states(prediction) @ states(reference).T
    precision = similarity[1:-1].max(dim=1).values.mean()
    recall = similarity[:, 1:-1].max(dim=0).values.mean()
    return float(2 * precision * recall / (precision + recall))


def test_bertscore_matches_direct_computation(tiny_bert):
    scores = BertScorer(str(tiny_bert), 2, device="cpu").score(PREDICTIONS, REFERENCES)
    expected = [direct_bertscore(tiny_bert, 2, p, r) for p, r in zip(PREDICTIONS, REFERENCES)]
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len(set(round(score, 4) for score in scores)) == 3  # not a constant


def test_bertscore_agrees_with_the_bert_score_package(tiny_bert):
    from bert_score import BERTScorer

    reference = BERTScorer(model_type=str(tiny_bert), num_layers=2)
    reference._tokenizer.model_max_length = 64  # unset in the tiny tokenizer: bert_score itself would overflow
    expected = reference.score(PREDICTIONS, REFERENCES)[2].tolist()
    assert BertScorer(str(tiny_bert), 2, device="cpu").score(PREDICTIONS, REFERENCES) == pytest.approx(expected, abs=1e-6)


def test_bertscore_edge_cases(tiny_bert):
    scorer = BertScorer(str(tiny_bert), 3, device="cpu")
    assert scorer.tokenizer.model_max_length == 64  # capped at the position embeddings
    empty, same, long = scorer.score(["", "김장을 했다.", "김장 " * 300], ["김장을 했다.", "김장을 했다.", "김장을 했다."])
    assert empty == 0.0 and same == pytest.approx(1.0, abs=1e-5) and 0 < long <= 1


def test_bertscore_layer_choice(tiny_bert, tmp_path):
    assert default_layer("bert-base-multilingual-cased") == 9
    assert default_layer("/models/bert-base-multilingual-cased") == 9
    assert default_layer("/hf/hub/models--bert-base-multilingual-cased/snapshots/0a1b") == 9
    assert default_layer(str(tiny_bert)) is None
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "bert", "vocab_size": 119547, "hidden_size": 768, "num_hidden_layers": 12}))
    assert default_layer(str(tmp_path)) == 9  # a local copy of mBERT under any name
    with pytest.raises(MetricUnavailable, match="pass --bertscore-layers N"):
        BertScorer(str(tiny_bert))
    with pytest.raises(MetricUnavailable, match="layer 4 out of range"):
        BertScorer(str(tiny_bert), 4)
    (tmp_path / "config.json").unlink()
    with pytest.raises(MetricUnavailable, match=f"cannot load '{tmp_path}': (?!not a local directory)"):
        BertScorer(str(tmp_path), 2)  # an existing folder without a model: the loader's own reason


# ---- BLEURT -------------------------------------------------------------------------------------------


def test_bleurt_matches_rembert(bleurt_spm, spm_model):
    """With SentencePiece: inputs are [CLS] reference [SEP] candidate [SEP] by piece id, and the score is
    RemBERT-for-regression's output on the same weights."""
    import sentencepiece
    from transformers import RemBertConfig, RemBertForSequenceClassification

    scorer = BleurtScorer(str(bleurt_spm), device="cpu", batch_size=2)
    scores = scorer.score(PREDICTIONS, REFERENCES)

    pieces = sentencepiece.SentencePieceProcessor(model_proto=spm_model)
    cls, sep = pieces.piece_to_id("[CLS]"), pieces.piece_to_id("[SEP]")
    reference_model = RemBertForSequenceClassification(RemBertConfig(
        vocab_size=600, input_embedding_size=16, output_embedding_size=16, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, num_labels=1, pad_token_id=0,
        hidden_act="gelu")).eval()
    weights = {key.replace("bleurt.", "rembert.").replace("embedding_projection", "embedding_hidden_mapping_in"): value
               for key, value in scorer.model.state_dict().items()}
    assert reference_model.load_state_dict(weights, strict=False).unexpected_keys == []
    expected = []
    for prediction, reference in zip(PREDICTIONS, REFERENCES):
        ref, cand = pieces.encode(reference), pieces.encode(prediction)
        ids = torch.tensor([[cls, *ref, sep, *cand, sep]])
        types = torch.tensor([[0] * (len(ref) + 2) + [1] * (len(cand) + 1)])
        with torch.no_grad():
            expected.append(float(reference_model(input_ids=ids, token_type_ids=types).logits))
    assert scores == pytest.approx(expected, abs=1e-5)
    scorer.batch_size = 1  # padding must not change a score
    assert scorer.score(PREDICTIONS, REFERENCES) == pytest.approx(scores, abs=1e-5)


def test_bleurt_without_projection_matches_bert(tmp_path, tiny_bert):
    """With a Hugging Face WordPiece tokenizer and no embedding projection: BERT-for-regression."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    directory = tiny_bleurt(tmp_path / "bleurt", len(tokenizer), None, seed=1)
    tokenizer.save_pretrained(directory)
    scores = BleurtScorer(str(directory), device="cpu").score(PREDICTIONS, REFERENCES)

    reference_model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=1)).eval()
    model = BleurtForSequenceClassification.load(directory)
    weights = {key.replace("bleurt.", "bert."): value for key, value in model.state_dict().items()}
    assert reference_model.load_state_dict(weights, strict=False).unexpected_keys == []
    with torch.no_grad():
        expected = reference_model(**tokenizer(REFERENCES, PREDICTIONS, padding=True, return_tensors="pt")).logits
    assert scores == pytest.approx(expected.squeeze(-1).tolist(), abs=1e-5)


def test_bleurt_checkpoint_layout(tmp_path, bleurt_spm):
    """The parameter names are bleurt-pytorch's; its saved position_ids buffer and a .bin file load."""
    from safetensors.torch import load_file

    keys = set(load_file(str(bleurt_spm / "model.safetensors")))
    layer = "bleurt.encoder.layer.1."
    assert {f"{layer}{name}.{kind}" for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                                                 "attention.output.dense", "attention.output.LayerNorm",
                                                 "intermediate.dense", "output.dense", "output.LayerNorm")
            for kind in ("weight", "bias")} < keys
    assert {"bleurt.embeddings.word_embeddings.weight", "bleurt.embeddings.position_embeddings.weight",
            "bleurt.embeddings.token_type_embeddings.weight", "bleurt.embeddings.LayerNorm.weight",
            "bleurt.encoder.embedding_projection.weight", "bleurt.pooler.dense.weight", "classifier.weight",
            "classifier.bias"} < keys
    config = json.loads((bleurt_spm / "config.json").read_text())
    assert config["model_type"] == "bleurt" and config["embedding_size"] == 16

    ported = tmp_path / "ported"
    ported.mkdir()
    state = load_file(str(bleurt_spm / "model.safetensors"))
    torch.save({**state, "bleurt.embeddings.position_ids": torch.arange(64)[None]}, ported / "pytorch_model.bin")
    for name in ("config.json", "spm.model"):
        (ported / name).write_bytes((bleurt_spm / name).read_bytes())
    original = BleurtScorer(str(bleurt_spm), device="cpu").score(PREDICTIONS, REFERENCES)
    assert BleurtScorer(str(ported), device="cpu").score(PREDICTIONS, REFERENCES) == pytest.approx(original)

    state["classifier.kernel"] = state.pop("classifier.weight")
    torch.save(state, ported / "pytorch_model.bin")
    with pytest.raises(MetricUnavailable, match="missing: classifier.weight; unexpected: classifier.kernel"):
        BleurtScorer(str(ported))
    (ported / "config.json").unlink()
    with pytest.raises(MetricUnavailable, match="has no config.json"):
        BleurtScorer(str(ported))


def test_pair_encoding_truncates_the_longer_side():
    encoder = PairEncoder(lambda text: [int(x) for x in text.split()], cls_id=2, sep_id=3, pad_id=0, max_length=10)
    assert encoder.encode("10 11", "20") == ([2, 10, 11, 3, 20, 3], [0, 0, 0, 0, 1, 1])
    # 7 slots for 5 + 4 tokens: the reference loses two (longer), then the tie goes against the candidate.
    ids, types = encoder.encode("10 11 12 13 14", "20 21 22 23")
    assert ids == [2, 10, 11, 12, 13, 3, 20, 21, 22, 3] and types == [0] * 6 + [1] * 4
    ids, _ = encoder.encode("10 11 12 13 14 15 16 17", "20")
    assert ids == [2, 10, 11, 12, 13, 14, 15, 3, 20, 3]


# ---- official score, in process and on the command line --------------------------------------------


def test_official_is_the_mean_of_the_three(tiny_bert, bleurt_spm, write_nikl, tmp_path):
    models = {"bertscore_model": str(tiny_bert), "bleurt_model": str(bleurt_spm)}
    parts = [pair_scorer(metric, **models, bertscore_layers=2)(PREDICTIONS, REFERENCES)
             for metric in ("rouge1", "bertscore", "bleurt")]
    official = pair_scorer("official", **models, bertscore_layers=2)(PREDICTIONS, REFERENCES)
    assert official == pytest.approx([sum(values) / 3 for values in zip(*parts)])

    items = load_json(DEV)[:3]
    predictions = write_nikl([{**item, "output": text} for item, text in zip(items, PREDICTIONS)], "result.json")
    references = write_nikl([{**item, "output": text} for item, text in zip(items, REFERENCES)], "refs.json")
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(cli, [
        "score", "--predictions", str(predictions), "--input", str(references), "--report", str(report_path),
        "--bertscore-model", str(tiny_bert), "--bertscore-layers", "2", "--bleurt-model", str(bleurt_spm)])
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.output and f"{str(tiny_bert)} (layer 2)" in result.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    for key, values in zip(("rouge1", "bertscore", "bleurt"), parts):
        assert report[key] == pytest.approx(sum(values) / 3)
        assert [row[key] for row in report["per_example"]] == pytest.approx(values)
    assert report["official"] == pytest.approx(sum(official) / 3)
    assert [row["official"] for row in report["per_example"]] == pytest.approx(official)
    assert report["skipped"] == {} and report["models"]["bleurt"] == str(bleurt_spm)
