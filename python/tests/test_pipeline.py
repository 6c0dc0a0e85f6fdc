"""pipeline("text-classification"): the scores of `bertune predict` in HF's answer shape."""
import json
import math
import subprocess

import pytest

import bertune
from conftest import REPO, SMALL_MODEL

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
