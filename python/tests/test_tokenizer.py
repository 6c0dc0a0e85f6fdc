"""AutoTokenizer against transformers 4.30's BertTokenizer (golden/tokenizer/*)."""
import numpy as np
import pytest

import bertune
from conftest import GOLDEN, KLUE, read_jsonl


@pytest.fixture(scope="module")
def tok(shared):
    return bertune.AutoTokenizer.from_pretrained(KLUE)


def test_single_texts_match_hf_ids(tok):
    rows = read_jsonl(GOLDEN / "tokenizer" / "klue_tricky.jsonl") + \
        read_jsonl(GOLDEN / "tokenizer" / "klue_nsmc_train_5000.jsonl", limit=500)
    enc = tok([r["text"] for r in rows])
    assert enc["input_ids"] == [r["ids"] for r in rows]
    assert enc["token_type_ids"] == [[0] * len(r["ids"]) for r in rows]
    assert enc["attention_mask"] == [[1] * len(r["ids"]) for r in rows]
    assert tok.convert_ids_to_tokens(rows[3]["ids"]) == rows[3]["tokens"]
    assert tok.tokenize(rows[3]["text"]) == rows[3]["tokens"][1:-1]


def test_pairs_match_hf_ids_and_types(tok):
    rows = read_jsonl(GOLDEN / "tokenizer" / "klue_pairs.jsonl", limit=600)
    for m in sorted({r["max_length"] for r in rows}):
        part = [r for r in rows if r["max_length"] == m]
        enc = tok([r["text"] for r in part], text_pair=[r["text_pair"] for r in part], truncation=True, max_length=m)
        assert enc["input_ids"] == [r["ids"] for r in part]
        assert enc["token_type_ids"] == [r["token_type_ids"] for r in part]
    one = rows[0]
    enc = tok(one["text"], one["text_pair"], truncation=True, max_length=one["max_length"])
    assert enc.input_ids == one["ids"]


def test_padding_and_numpy_tensors(tok):
    long = tok("아 더빙.. 진짜 짜증나네요 목소리")["input_ids"]
    n = len(long)
    enc = tok(["굳 ㅋ", "아 더빙.. 진짜 짜증나네요 목소리"], padding=True, return_tensors="np")
    assert enc["input_ids"].dtype == np.int64
    assert enc["input_ids"].shape == (2, n)
    assert enc["input_ids"][0].tolist() == [2, 618, 191, 3] + [tok.pad_token_id] * (n - 4)
    assert enc["input_ids"][1].tolist() == long
    assert enc["attention_mask"][0].tolist() == [1] * 4 + [0] * (n - 4)
    enc = tok(["굳 ㅋ"], padding="max_length", max_length=8, truncation=True, return_tensors="np")
    assert enc["input_ids"].shape == (1, 8)
    enc = tok("아 더빙.. 진짜 짜증나네요 목소리", truncation=True, max_length=5)
    assert len(enc["input_ids"]) == 5 and enc["input_ids"][-1] == tok.sep_token_id
    with pytest.raises(ValueError, match="padding=True"):
        tok(["굳 ㅋ", "아 더빙.. 진짜"], return_tensors="np")


def test_decode_vocab_and_save(tok, tmp_path):
    ids = tok("아 더빙.. 진짜 짜증나네요 목소리")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "아 더빙.. 진짜 짜증나네요 목소리"
    assert tok.decode(ids).startswith("[CLS] 아 더빙")
    assert tok.vocab_size == 32000 == len(tok)
    written = tok.save_pretrained(tmp_path / "saved")
    assert any(p.endswith("vocab.txt") for p in written)
    again = bertune.AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert again("굳 ㅋ")["input_ids"] == [2, 618, 191, 3]
    with pytest.raises(IndexError, match="outside the vocabulary"):
        tok.convert_ids_to_tokens([40000])


def test_sentencepiece_matches_hf_xlmr(shared, tmp_path):
    import shutil
    shutil.copyfile(GOLDEN / "tokenizer" / "xlmr_nsmc_unigram.model", tmp_path / "sentencepiece.bpe.model")
    xlmr = bertune.AutoTokenizer.from_pretrained(tmp_path)
    rows = read_jsonl(GOLDEN / "tokenizer" / "xlmr_nsmc.jsonl")
    singles = [r for r in rows if "text_pair" not in r][:300]
    enc = xlmr([r["text"] for r in singles])
    assert enc["input_ids"] == [r["ids"] for r in singles]
    assert "token_type_ids" not in enc  # XLMRobertaTokenizer returns none
    pairs = [r for r in rows if "text_pair" in r][:300]
    for m in sorted({r["max_length"] for r in pairs}):
        part = [r for r in pairs if r["max_length"] == m]
        got = xlmr([r["text"] for r in part], [r["text_pair"] for r in part], truncation=True, max_length=m)
        assert got["input_ids"] == [r["ids"] for r in part]
