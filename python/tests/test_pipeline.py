"""pipeline("text-classification"): the scores of `bertune predict` in HF's answer shape."""
import json
import math
import struct
import subprocess

import numpy as np

import pytest

import bertune
from conftest import REPO, SHARED, SMALL_MODEL

BINARY = REPO / "build" / "bertune"


@pytest.fixture
def model_dir(shared):
    return SMALL_MODEL  # its tokenizer's vocabulary; a fresh head (seed 42), as predict makes it


def test_answers_in_hf_shape(model_dir):
    pipe = bertune.pipeline("text-classification", model=model_dir)
    one = pipe("굳 ㅋ")
    assert isinstance(one, list) and len(one) == 1 and set(one[0]) == {"label", "score"}
    both = pipe(["굳 ㅋ", "아 더빙.. 진짜 짜증나네요 목소리"])
    assert len(both) == 2 and both[0] == one[0]
    everything = pipe("굳 ㅋ", top_k=None)
    assert len(everything) == 2 and everything[0] == one[0]
    assert math.isclose(sum(a["score"] for a in everything), 1.0, rel_tol=1e-5)
    assert [a["score"] for a in everything] == sorted((a["score"] for a in everything), reverse=True)
    two = bertune.pipeline("text-classification", model=model_dir, top_k=2)(["굳 ㅋ", "목소리"])
    assert [len(a) for a in two] == [2, 2]


def test_same_scores_as_predict(model_dir, tmp_path):
    texts = ["굳 ㅋ", "아 더빙.. 진짜 짜증나네요 목소리", "흠...포스터보고 초딩영화줄"]
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"document": t}, ensure_ascii=False) + "\n" for t in texts))
    out = tmp_path / "pred.jsonl"
    subprocess.run([str(BINARY), "predict", "--model", str(model_dir), "--input", str(data), "--output", str(out),
                    "--allow-untrained-head"], check=True, capture_output=True)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    answers = bertune.pipeline("text-classification", model=model_dir, top_k=None)(texts)
    assert len(records) == len(answers) == 3
    for record, answer in zip(records, answers):
        best = max(range(2), key=lambda i: record["probs"][i])
        assert answer[0]["label"] == record["label_name"] == f"LABEL_{best}"
        assert answer[0]["score"] == pytest.approx(record["probs"][best], rel=1e-6)


def test_unknown_task_and_missing_model(model_dir, tmp_path):
    with pytest.raises(ValueError, match="not supported"):
        bertune.pipeline("summarization", model=model_dir)
    with pytest.raises(ValueError, match="nowhere"):
        bertune.pipeline("text-classification", model=tmp_path / "nowhere")


def test_sentence_pairs_in_hf_shapes(model_dir, tmp_path):
    """{"text", "text_pair"} is one pair (a dict answer, as transformers 4.30 gives), scored as
    `bertune predict --text-pair-column` scores it; lists mix texts and pairs."""
    pairs = [("굳 ㅋ", "아 더빙.. 진짜 짜증나네요 목소리"), ("흠...포스터보고 초딩영화줄", "목소리")]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"a": a, "b": b}, ensure_ascii=False) + "\n" for a, b in pairs))
    out = subprocess.run([str(BINARY), "predict", "--model", str(model_dir), "--input", str(data), "--text-column", "a",
                          "--text-pair-column", "b", "--allow-untrained-head"], check=True, capture_output=True,
                         text=True).stdout
    records = [json.loads(line) for line in out.splitlines()]
    pipe = bertune.pipeline("text-classification", model=model_dir)
    one = pipe({"text": pairs[0][0], "text_pair": pairs[0][1]})
    assert isinstance(one, dict) and one["score"] == pytest.approx(max(records[0]["probs"]), rel=1e-5)
    assert one != pipe(pairs[0][0])[0]  # the pair is not its first text alone
    mixed = pipe([{"text": a, "text_pair": b} for a, b in pairs] + [pairs[0][0]])
    assert len(mixed) == 3 and all(isinstance(m, dict) for m in mixed)
    assert [m["score"] for m in mixed[:2]] == pytest.approx([max(r["probs"]) for r in records], rel=1e-5)
    assert mixed[2] == pipe([pairs[0][0]])[0]
    assert pipe(pairs[0][0], text_pair=pairs[0][1]) == [one]
    every = pipe({"text": pairs[0][0], "text_pair": pairs[0][1]}, top_k=None)
    assert len(every) == 2 and every[0] == one
    with pytest.raises(ValueError, match="text pairs"):
        pipe([list(pairs[0])])  # transformers refuses a list item that is a list
    with pytest.raises(ValueError, match="got keys"):
        pipe({"text": "a", "pair": "b"})


def test_top_k_at_construction_wraps_a_single_text(model_dir):
    """transformers 4.30 answers pipeline(top_k=k)("text") with [[k labels]], and a top_k given to
    the call with [k labels]."""
    pipe = bertune.pipeline("text-classification", model=model_dir, top_k=None)
    wrapped = pipe("굳 ㅋ")
    assert len(wrapped) == 1 and len(wrapped[0]) == 2
    assert pipe("굳 ㅋ", top_k=None) == wrapped[0]


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    """A tiny token classifier trained by `bertune train --task token-classification` on KLUE-NER."""
    d = tmp_path_factory.mktemp("tagger")
    sentences, lines = 0, []
    with open(SHARED / "data" / "klue" / "ner_train.tsv", encoding="utf-8") as f:
        for line in f:
            lines.append(line)
            sentences += line == "\n"
            if sentences == 30:
                break
    (d / "ner.tsv").write_text("".join(lines), encoding="utf-8")
    (d / "tiny.json").write_text(json.dumps({"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 2,
                                             "num_attention_heads": 2, "intermediate_size": 64,
                                             "max_position_embeddings": 64}))
    subprocess.run([str(BINARY), "train", "--task", "token-classification", "--model-config", str(d / "tiny.json"),
                    "--train-file", str(d / "ner.tsv"), "--max-length", "48", "--max-steps", "6", "--learning-rate",
                    "1e-2", "--save-strategy", "no", "--threads", "2", "--output-dir", str(d / "out")],
                   check=True, capture_output=True)
    # So few steps tag every piece O: a classifier of random weights (seeded) gives each piece the
    # label its hidden state favours, varying from piece to piece, so that grouping has work to do.
    model = d / "out" / "final"
    data = bytearray((model / "model.safetensors").read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    start, end = header["classifier.weight"]["data_offsets"]
    weight = np.random.default_rng(0).normal(0.0, 1.0, header["classifier.weight"]["shape"]).astype(np.float32)
    data[8 + n + start:8 + n + end] = weight.tobytes()
    (model / "model.safetensors").write_bytes(bytes(data))
    return model


def assert_same_records(got, expected):
    """Entity records equal but for the scores' last bits."""
    assert [{k: v for k, v in r.items() if k != "score"} for r in got] == \
           [{k: v for k, v in r.items() if k != "score"} for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], rel=1e-5)


def test_token_classification_answers_what_predict_prints(tagger):
    """pipeline("ner") gives `bertune predict`'s records for every aggregation strategy, HF's
    default ("none": one record per piece) when none is named."""
    texts = ["경찰은 또 성매매 알선 자금을 관리한 박씨의 딸", "김모(33)씨 등 16명"]

    def predict(strategy):
        out = subprocess.run([str(BINARY), "predict", "--model", str(tagger), "--aggregation-strategy", strategy,
                              "--threads", "2"] + texts, check=True, capture_output=True, text=True).stdout
        return [json.loads(line) for line in out.splitlines()]

    ner = bertune.pipeline("ner", model=tagger)
    for strategy in ["none", "simple", "first", "average", "max"]:
        expected = predict(strategy)
        assert sum(len(e) for e in expected) >= 2, expected  # records to compare
        got = ner(texts, aggregation_strategy=strategy) if strategy != "none" else ner(texts)
        assert len(got) == 2
        for g, e in zip(got, expected):
            assert_same_records(g, e)
    labels = {r["entity"] for r in ner(texts[0])}
    assert {r["entity"] for r in ner(texts[0], ignore_labels=sorted(labels)[:1])} == labels - set(sorted(labels)[:1])
    assert_same_records(ner(texts[0]), ner(texts)[0])  # a batch of one: equal to float rounding
    simple = bertune.pipeline("token-classification", model=tagger, aggregation_strategy="simple")
    assert simple(texts[1]) == ner(texts[1], aggregation_strategy="simple")
    with pytest.raises(ValueError, match="aggregation_strategy"):
        ner(texts[0], aggregation_strategy="longest")
    with pytest.raises(ValueError, match="token classifier; text-classification needs a sequence classifier"):
        bertune.pipeline("text-classification", model=tagger)
    with pytest.raises(ValueError, match="sequence classifier; ner needs a token classifier"):
        bertune.pipeline("ner", model=SMALL_MODEL)
