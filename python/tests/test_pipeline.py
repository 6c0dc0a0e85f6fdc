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
