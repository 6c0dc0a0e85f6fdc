#!/usr/bin/python3
"""Writes a random-weights BertForSequenceClassification model directory of any shape,
for speed measurements (no training, no transformers: json + numpy).

  python3 bench/random_bert.py --config ../shared/models/klue-bert-base/config.json --output /tmp/klue-base-random

HF's _init_weights: Linear and Embedding weights N(0, initializer_range), the padding_idx
row of word_embeddings 0, biases 0, LayerNorm weight 1 / bias 0. Labels negative/positive.
The tokenizer files beside the config (vocab.txt, tokenizer_config.json, ...) are copied,
so `bertune eval` / `tokenize` use the config's own tokenizer. The directory appears whole:
written beside the output, then renamed.
"""
import argparse
import json
import os
import shutil
import struct

import numpy as np


def tensor_shapes(c, num_labels):
    V, H, I = c["vocab_size"], c["hidden_size"], c["intermediate_size"]
    P, TT = c["max_position_embeddings"], c.get("type_vocab_size", 2)
    shapes = {
        "bert.embeddings.word_embeddings.weight": [V, H],
        "bert.embeddings.position_embeddings.weight": [P, H],
        "bert.embeddings.token_type_embeddings.weight": [TT, H],
        "bert.embeddings.LayerNorm.weight": [H],
        "bert.embeddings.LayerNorm.bias": [H],
    }
    for l in range(c["num_hidden_layers"]):
        p = f"bert.encoder.layer.{l}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[p + name + ".weight"] = [H, H]
            shapes[p + name + ".bias"] = [H]
        shapes[p + "attention.output.LayerNorm.weight"] = [H]
        shapes[p + "attention.output.LayerNorm.bias"] = [H]
        shapes[p + "intermediate.dense.weight"] = [I, H]
        shapes[p + "intermediate.dense.bias"] = [I]
        shapes[p + "output.dense.weight"] = [H, I]
        shapes[p + "output.dense.bias"] = [H]
        shapes[p + "output.LayerNorm.weight"] = [H]
        shapes[p + "output.LayerNorm.bias"] = [H]
    shapes["bert.pooler.dense.weight"] = [H, H]
    shapes["bert.pooler.dense.bias"] = [H]
    shapes["classifier.weight"] = [num_labels, H]
    shapes["classifier.bias"] = [num_labels]
    return shapes


def init(name, shape, std, pad_id, rng):
    if "LayerNorm.weight" in name:
        return np.ones(shape, np.float32)
    if name.endswith(".bias") or "LayerNorm" in name:
        return np.zeros(shape, np.float32)
    w = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
    if name.endswith("word_embeddings.weight"):
        w[pad_id] = 0
    return w


def write_safetensors(path, tensors):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, t in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors.values():
            f.write(np.ascontiguousarray(t).tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="a BERT config.json (its directory's tokenizer files are copied)")
    ap.add_argument("--output", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with open(a.config) as f:
        c = json.load(f)
    c["architectures"] = ["BertForSequenceClassification"]
    c["id2label"] = {"0": "negative", "1": "positive"}
    c["label2id"] = {"negative": 0, "positive": 1}
    rng = np.random.default_rng(a.seed)
    std, pad_id = c.get("initializer_range", 0.02), c.get("pad_token_id", 0)
    tensors = {n: init(n, s, std, pad_id, rng) for n, s in tensor_shapes(c, 2).items()}
    tmp = a.output.rstrip("/") + f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    write_safetensors(os.path.join(tmp, "model.safetensors"), tensors)
    src = os.path.dirname(os.path.abspath(a.config))
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if os.path.exists(os.path.join(src, name)):
            shutil.copy(os.path.join(src, name), tmp)
    shutil.rmtree(a.output, ignore_errors=True)
    os.rename(tmp, a.output)
    n = sum(t.size for t in tensors.values())
    print(f"{a.output}: {n:,} parameters, random (seed {a.seed})")


if __name__ == "__main__":
    main()
