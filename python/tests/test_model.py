"""AutoModelFor*Classification against transformers 4.30's logits (golden/bert, golden/families)."""
import json

import numpy as np
import pytest

import bertune
from conftest import GOLDEN, golden_model_dir, padded, read_safetensors

FAMILIES = ["roberta_seqcls", "electra_seqcls", "distilbert_seqcls", "bert_regression", "bert_multilabel",
            "bert_pair"]


def test_bert_logits_match_hf(shared, tmp_path):
    d = golden_model_dir(tmp_path, GOLDEN / "bert" / "tiny_config.json", GOLDEN / "bert" / "tiny_init.safetensors")
    model = bertune.AutoModelForSequenceClassification.from_pretrained(d)
    inputs = json.loads((GOLDEN / "bert" / "tiny_inputs.json").read_text())
    ids, mask, types = padded(inputs["sequences"])
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    expected = read_safetensors(GOLDEN / "bert" / "tiny_forward.safetensors")["logits"]
    assert out.logits.dtype == np.float32 and out.logits.shape == (5, 2)
    np.testing.assert_allclose(out.logits, expected, atol=1e-4, rtol=0)
    assert model.config["hidden_size"] == 64 and model.num_labels == 2
    # One sequence alone (no padding, no mask) answers the same row.
    alone = model(input_ids=np.array(inputs["sequences"][3])).logits
    np.testing.assert_allclose(alone[0], expected[3], atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", FAMILIES)
def test_family_logits_match_hf(shared, tmp_path, case):
    g = GOLDEN / "families" / case
    model = bertune.AutoModelForSequenceClassification.from_pretrained(
        golden_model_dir(tmp_path, g / "config.json", g / "init.safetensors"))
    inputs = json.loads((g / "inputs.json").read_text())
    types = inputs.get("token_type_ids")
    ids, mask, tt = padded(inputs["sequences"], types if isinstance(types, list) else None,
                           pad=inputs.get("pad_token_id", 0))
    logits = model(input_ids=ids, attention_mask=mask, token_type_ids=tt if isinstance(types, list) else None).logits
    np.testing.assert_allclose(logits, read_safetensors(g / "forward.safetensors")["logits"], atol=1e-4, rtol=0)


def test_token_classifier_logits_match_hf(shared, tmp_path):
    g = GOLDEN / "families" / "bert_tokencls"
    d = golden_model_dir(tmp_path, g / "config.json", g / "init.safetensors")
    model = bertune.AutoModelForTokenClassification.from_pretrained(d)
    inputs = json.loads((g / "inputs.json").read_text())
    ids, mask, tt = padded(inputs["sequences"])
    logits = model(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == (5, ids.shape[1], model.num_labels)
    real = np.concatenate([logits[i, :len(s)] for i, s in enumerate(inputs["sequences"])])
    np.testing.assert_allclose(real, read_safetensors(g / "forward.safetensors")["logits"], atol=1e-4, rtol=0)
    assert not logits[2, 3:].any()  # padding rows are 0
    with pytest.raises(ValueError, match="token classifier"):
        bertune.AutoModelForSequenceClassification.from_pretrained(d)


def test_save_pretrained_round_trip(shared, tmp_path):
    d = golden_model_dir(tmp_path, GOLDEN / "bert" / "tiny_config.json", GOLDEN / "bert" / "tiny_init.safetensors")
    model = bertune.AutoModelForSequenceClassification.from_pretrained(d)
    model.save_pretrained(tmp_path / "saved")
    again = bertune.AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    ids, mask, _ = padded([[2, 219, 235, 3], [2, 344, 3]])
    np.testing.assert_array_equal(model(ids, mask).logits, again(ids, mask).logits)
    assert (tmp_path / "saved" / "vocab.txt").is_file()


def test_bad_inputs_are_value_errors(shared, tmp_path):
    d = golden_model_dir(tmp_path, GOLDEN / "bert" / "tiny_config.json", GOLDEN / "bert" / "tiny_init.safetensors")
    model = bertune.AutoModelForSequenceClassification.from_pretrained(d)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        model(input_ids=np.array([[2, 9999, 3]]))
    with pytest.raises(ValueError, match="type_vocab_size 2"):
        model(input_ids=np.array([[2, 5, 3]]), token_type_ids=np.array([[0, 2, 0]]))
    with pytest.raises(ValueError, match="empty batch"):
        model(input_ids=np.zeros((0, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="only right padding"):
        model(input_ids=np.array([[0, 2, 3]]), attention_mask=np.array([[0, 1, 1]]))
    with pytest.raises(ValueError, match="attention_mask: expected the shape"):
        model(input_ids=np.array([[2, 3]]), attention_mask=np.array([[1, 1, 1]]))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{\"hidden_size\": 64,")
    with pytest.raises(ValueError, match="config.json"):
        bertune.AutoModelForSequenceClassification.from_pretrained(tmp_path / "broken")
    with pytest.raises(ValueError, match="not one of cpu|cuda"):
        bertune.AutoModelForSequenceClassification.from_pretrained(d, device="tpu")


def test_precision_bf16_within_the_bf16_bounds(shared, tmp_path, monkeypatch):
    """precision="bf16": the GEMMs in bf16 (logits off fp32's, within the bf16 golden bound) on a
    CPU that has it; refused naming the CPU flag where it has not (simulated); tf32 refused."""
    d = golden_model_dir(tmp_path, GOLDEN / "bert" / "tiny_config.json", GOLDEN / "bert" / "tiny_init.safetensors")
    inputs = json.loads((GOLDEN / "bert" / "tiny_inputs.json").read_text())
    ids, mask, types = padded(inputs["sequences"])
    expected = read_safetensors(GOLDEN / "bert" / "tiny_forward.safetensors")["logits"]
    with pytest.raises(ValueError, match="tf32"):
        bertune.AutoModelForSequenceClassification.from_pretrained(d, precision="tf32")
    monkeypatch.setenv("BERTUNE_TEST_CPU_WITHOUT_BF16", "1")
    with pytest.raises(ValueError, match="avx512_bf16 or AMX-BF16"):
        bertune.AutoModelForSequenceClassification.from_pretrained(d, precision="bf16")
    monkeypatch.delenv("BERTUNE_TEST_CPU_WITHOUT_BF16")
    try:
        model = bertune.AutoModelForSequenceClassification.from_pretrained(d, precision="bf16")
    except ValueError as e:
        pytest.skip(str(e))  # this CPU or build has no bf16 GEMMs: the reason, not a pass
    try:
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    finally:
        bertune.AutoModelForSequenceClassification.from_pretrained(d, precision="fp32")
    np.testing.assert_allclose(out, expected, atol=5e-3, rtol=0)
    assert np.abs(out - expected).max() > 1e-6, "bf16 gave fp32's logits"
