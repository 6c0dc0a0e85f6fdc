"""AutoModelForSequenceClassification / AutoModelForTokenClassification: a model directory
loaded as ``bertune eval``, ``predict`` and ``serve`` load it (fp32, int8, CPU or CUDA).

HF: ``transformers.AutoModelForSequenceClassification`` and ``...ForTokenClassification``.
"""
import json
import os

import numpy as np

from . import _native


class ModelOutput(dict):
    """HF: ``transformers.utils.ModelOutput`` — a dict whose keys are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class SequenceClassifierOutput(ModelOutput):
    """HF: ``SequenceClassifierOutput``: ``logits`` float32 [batch, num_labels]."""


class TokenClassifierOutput(ModelOutput):
    """HF: ``TokenClassifierOutput``: ``logits`` float32 [batch, length, num_labels] (0 at padding)."""


def _int_array(name, value):
    if value is None:
        return None
    a = np.asarray(value)
    if a.ndim == 1:
        a = a[None, :]
    if a.dtype.kind not in "iub":
        raise ValueError(f"{name}: expected integer ids, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


class PreTrainedModel:
    """A classifier loaded from a directory; call it like the HF model (numpy in, numpy out)."""

    _output_class = SequenceClassifierOutput

    def __init__(self, native):
        self._native = native
        self.name_or_path = str(native.dir)

    @property
    def config(self):
        """config.json as a dict (HF: ``model.config.to_dict()``)."""
        return json.loads(self._native.config_json)

    @property
    def num_labels(self):
        return self._native.num_labels

    @property
    def device(self):
        return self._native.device

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs):
        """HF: ``model(input_ids=..., attention_mask=..., token_type_ids=...)`` in eval mode
        (dropout off). Rows are right-padded ([batch, length]; a 1-D row is one sequence)."""
        unknown = set(kwargs) - {"return_dict"}
        if unknown:
            raise TypeError(f"unexpected argument(s): {', '.join(sorted(unknown))}")
        ids = _int_array("input_ids", input_ids)
        logits = self._native.forward(ids, _int_array("attention_mask", attention_mask),
                                      _int_array("token_type_ids", token_type_ids))
        return self._output_class(logits=logits)

    forward = __call__

    def eval(self):
        return self  # always in inference mode; training runs through Trainer

    def save_pretrained(self, save_directory):
        """HF: ``save_pretrained`` — config.json, model.safetensors and the tokenizer files."""
        self._native.save_pretrained(os.fspath(save_directory))

    def __repr__(self):
        kind = "int8" if self._native.int8 else "fp32"
        return f"{type(self).__name__}({self.name_or_path!r}, {kind}, device={self.device!r})"


class BertForSequenceClassification(PreTrainedModel):
    """HF: ``<Family>ForSequenceClassification`` (BERT, RoBERTa / XLM-R, ELECTRA, DistilBERT)."""


class BertForTokenClassification(PreTrainedModel):
    """HF: ``<Family>ForTokenClassification``."""

    _output_class = TokenClassifierOutput


def _load(directory, device, int8, token, precision):
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise OSError(f"{directory}: not a directory (bertune loads local model directories only)")
    native = _native.Model.load(directory, device=device, int8=int8, precision=precision or "")
    if native.token_classifier != token:
        have = "token" if native.token_classifier else "sequence"
        raise ValueError(f"{directory} holds a {have} classifier (config.json's architectures); load it with "
                         f"AutoModelFor{'Token' if native.token_classifier else 'Sequence'}Classification")
    return (BertForTokenClassification if token else BertForSequenceClassification)(native)


class AutoModelForSequenceClassification:
    """HF: ``transformers.AutoModelForSequenceClassification``."""

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path, device="cpu", int8=False, precision=None):
        """A model directory: fp32 (safetensors or pytorch_model.bin), or int8 from
        ``bertune quantize``; int8=True quantizes an fp32 model while loading. A checkpoint
        without a classification head gets a fresh one (seed 42), with a warning.
        precision: what the GEMMs multiply in from now on, as ``--precision`` (None: the
        device's default; "bf16" on a CPU with avx512_bf16 or AMX-BF16)."""
        return _load(pretrained_model_name_or_path, device, int8, token=False, precision=precision)


class AutoModelForTokenClassification:
    """HF: ``transformers.AutoModelForTokenClassification``."""

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path, device="cpu", int8=False, precision=None):
        """A token classifier's directory (``<Family>ForTokenClassification`` in config.json)."""
        return _load(pretrained_model_name_or_path, device, int8, token=True, precision=precision)
