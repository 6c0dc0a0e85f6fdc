#!/usr/bin/python3
"""The CPU inference peer of bench/infer_vs_torch.sh: Hugging Face's BertForSequenceClassification
(transformers 4.30 modeling_bert.py) re-implemented module for module in PyTorch, eager,
fp32, run as the peer is defined there: torch.inference_mode, 2 threads, batches of
64 sorted by length (padded to the longest of each batch, HF's additive attention mask),
tokenization not counted. --int8: torch.ao.quantization.quantize_dynamic on every nn.Linear
(qint8 weights, dynamic per-tensor activations), the usual CPU int8 recipe.

No transformers here (Debian has none; no pip): the modules below keep HF's names, so the
state_dict of a bertune / HF model directory loads into them strictly. torch 1.13 has no
safetensors module, so model.safetensors is read with json + numpy.

Input: token ids, one JSON object per line with "ids" ([CLS] ... [SEP]), as
`bertune tokenize --input FILE --max-length 128 [--tokenizer MODEL_DIR]` writes them.

  python3 bench/peer_torch.py --model DIR --ids ids.jsonl [--int8] [--threads 2]
      [--batch-size 64] [--logits-out logits.json] [--against predict.jsonl]

Prints one JSON line: docs, seconds (the timed loop: batch building + forward), docs_per_s,
load_s, threads, int8, torch version; with --against (the JSONL `bertune predict` wrote for
the same texts) also the max |logit difference| and the argmax agreement.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


def read_safetensors(path):
    """name -> torch tensor (float32) of a safetensors file: 8-byte little-endian header
    length, the JSON header, the data; BF16 widened by hand (numpy has no bfloat16)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (a, b) = e["dtype"], e["shape"], e["data_offsets"]
        if dtype == "BF16":
            u16 = np.frombuffer(data[a:b], dtype=np.uint16).astype(np.uint32) << 16
            arr = u16.view(np.float32)
        elif dtype in DTYPES:
            arr = np.frombuffer(data[a:b], dtype=DTYPES[dtype])
        else:
            sys.exit(f"{path}: {name}: dtype {dtype} not supported by the peer "
                     "(an int8 directory from `bertune quantize`? give the fp32 model and --int8)")
        t = torch.from_numpy(arr.copy()).reshape(shape)
        out[name] = t.float() if t.is_floating_point() else t
    return out


# ---- modeling_bert.py, inference (dropout layers kept: identity in eval mode) ----

class BertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"], padding_idx=c.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])

    def forward(self, input_ids, token_type_ids):
        position_ids = torch.arange(input_ids.shape[1]).unsqueeze(0)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_attention_heads = c["num_attention_heads"]
        self.attention_head_size = c["hidden_size"] // c["num_attention_heads"]
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(c["hidden_size"], self.all_head_size)
        self.key = nn.Linear(c["hidden_size"], self.all_head_size)
        self.value = nn.Linear(c["hidden_size"], self.all_head_size)
        self.dropout = nn.Dropout(c["attention_probs_dropout_prob"])

    def transpose_for_scores(self, x):
        x = x.view(x.size()[:-1] + (self.num_attention_heads, self.attention_head_size))
        return x.permute(0, 2, 1, 3)

    def forward(self, hidden, extended_mask):
        q = self.transpose_for_scores(self.query(hidden))
        k = self.transpose_for_scores(self.key(hidden))
        v = self.transpose_for_scores(self.value(hidden))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
        scores = scores + extended_mask
        probs = self.dropout(nn.functional.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.size()[:-2] + (self.all_head_size,))


class BertSelfOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])

    def forward(self, hidden, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c)

    def forward(self, hidden, extended_mask):
        return self.output(self.self(hidden, extended_mask), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.intermediate_act_fn = nn.GELU()  # "gelu": the erf form

    def forward(self, hidden):
        return self.intermediate_act_fn(self.dense(hidden))


class BertOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["intermediate_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])

    def forward(self, hidden, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + input_tensor)


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c)

    def forward(self, hidden, extended_mask):
        a = self.attention(hidden, extended_mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, hidden, extended_mask):
        for layer in self.layer:
            hidden = layer(hidden, extended_mask)
        return hidden


class BertPooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.activation = nn.Tanh()

    def forward(self, hidden):
        return self.activation(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)
        self.pooler = BertPooler(c)

    def forward(self, input_ids, attention_mask, token_type_ids):
        # get_extended_attention_mask: [B, 1, 1, S], (1 - mask) * finfo(float32).min
        ext = attention_mask[:, None, None, :].to(torch.float32)
        ext = (1.0 - ext) * torch.finfo(torch.float32).min
        return self.pooler(self.encoder(self.embeddings(input_ids, token_type_ids), ext))


class BertForSequenceClassification(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bert = BertModel(c)
        p = c.get("classifier_dropout")
        self.dropout = nn.Dropout(p if p is not None else c["hidden_dropout_prob"])
        self.classifier = nn.Linear(c["hidden_size"], num_labels(c))

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.classifier(self.dropout(self.bert(input_ids, attention_mask, token_type_ids)))


def num_labels(c):
    if "id2label" in c:
        return len(c["id2label"])
    return c.get("num_labels", 2)


def load_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    if "bertune_quantization" in c:
        sys.exit(f"{model_dir}: an int8 directory from `bertune quantize`; give the fp32 model (--int8 quantizes it)")
    c.setdefault("layer_norm_eps", 1e-12)
    c.setdefault("type_vocab_size", 2)
    if c.get("hidden_act", "gelu") != "gelu":
        sys.exit(f"{model_dir}: hidden_act {c['hidden_act']} (the peer implements gelu)")
    m = BertForSequenceClassification(c)
    tensors = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    tensors = {k: v for k, v in tensors.items() if not k.endswith("position_ids")}
    m.load_state_dict(tensors, strict=True)  # every tensor present, none left over
    return m.eval(), c


def read_ids(path):
    with open(path) as f:
        return [json.loads(line)["ids"] for line in f if line.strip()]


def batches_by_length(seqs, batch_size):
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # stable: ties keep file order
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padded(seqs, idx, pad_id):
    """DataCollatorWithPadding: pad to the longest of the batch, attention_mask 1 on tokens."""
    longest = max(len(seqs[i]) for i in idx)
    ids = torch.full((len(idx), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), longest), dtype=torch.long)
    for r, i in enumerate(idx):
        ids[r, :len(seqs[i])] = torch.tensor(seqs[i], dtype=torch.long)
        mask[r, :len(seqs[i])] = 1
    return ids, mask, torch.zeros_like(ids)


def run(model, seqs, batch_size, pad_id):
    logits = [None] * len(seqs)
    with torch.inference_mode():
        for idx in batches_by_length(seqs, batch_size):
            ids, mask, types = padded(seqs, idx, pad_id)
            out = model(ids, mask, types)
            for r, i in enumerate(idx):
                logits[i] = out[r].tolist()
    return logits


def compare(logits, predict_jsonl):
    with open(predict_jsonl) as f:
        ours = [json.loads(line)["logits"] for line in f if line.strip().startswith("{")]
    if len(ours) != len(logits):
        sys.exit(f"{predict_jsonl}: {len(ours)} rows, the peer has {len(logits)}")
    diff = max(abs(a - b) for x, y in zip(logits, ours) for a, b in zip(x, y))
    agree = sum(int(np.argmax(x) == np.argmax(y)) for x, y in zip(logits, ours))
    return diff, agree


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="JSONL of `bertune tokenize` ({\"ids\": [...]} per line)")
    ap.add_argument("--int8", action="store_true", help="quantize_dynamic(nn.Linear, qint8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--logits-out", help="write the logits (input order) as JSON here")
    ap.add_argument("--against", help="`bertune predict` JSONL of the same texts: report max |logit diff|")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    model, config = load_model(a.model)
    if a.int8:
        model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    load_s = time.perf_counter() - t0
    seqs = read_ids(a.ids)
    if not seqs:
        sys.exit(f"{a.ids}: no sequences")
    t1 = time.perf_counter()
    logits = run(model, seqs, a.batch_size, config.get("pad_token_id", 0))
    seconds = time.perf_counter() - t1
    rec = {"peer": "torch-int8" if a.int8 else "torch-fp32", "docs": len(seqs), "seconds": round(seconds, 4),
           "docs_per_s": round(len(seqs) / seconds, 2), "load_s": round(load_s, 3), "threads": a.threads,
           "batch_size": a.batch_size, "torch": torch.__version__,
           "quantized_engine": torch.backends.quantized.engine}
    if a.logits_out:
        with open(a.logits_out, "w") as f:
            json.dump(logits, f)
    if a.against:
        diff, agree = compare(logits, a.against)
        rec["max_abs_logit_diff_vs_bertune"] = diff
        rec["argmax_agree"] = f"{agree}/{len(seqs)}"
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
