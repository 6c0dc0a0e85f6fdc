"""Fixtures of the Python package's tests: the shared data and golden files (BERTUNE_SHARED,
else ../shared beside the checkout), golden model directories, safetensors reading."""
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("BERTUNE_SHARED", REPO.parent / "shared"))
GOLDEN = SHARED / "golden"
KLUE = SHARED / "models" / "klue-bert-base"
SMALL_MODEL = REPO / "models" / "nsmc-bert-small"
NSMC = SHARED / "data" / "nsmc"

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    """name -> numpy array of a .safetensors file."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + start:8 + n + end], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def read_jsonl(path, limit=None):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if limit is not None and len(rows) == limit:
                break
    return rows


@pytest.fixture(scope="session")
def shared():
    if not (SHARED / "golden").is_dir():
        pytest.fail(f"shared data not found at {SHARED} (set BERTUNE_SHARED)")
    return SHARED


def golden_model_dir(tmp_path, config, weights):
    """A model directory of a golden case: its config.json and its initial weights."""
    d = tmp_path / Path(weights).stem
    d.mkdir()
    shutil.copyfile(config, d / "config.json")
    shutil.copyfile(weights, d / "model.safetensors")
    return d


def padded(sequences, types=None, pad=0):
    """Right-padded [B, T] input_ids, attention_mask, token_type_ids of id lists."""
    T = max(len(s) for s in sequences)
    ids = np.full((len(sequences), T), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    tt = np.zeros_like(ids)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
        if types is not None:
            tt[i, :len(s)] = types[i]
    return ids, mask, tt
