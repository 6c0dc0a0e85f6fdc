"""pipeline("text-classification"): the label scores ``bertune predict`` and ``serve``
answer. HF: ``transformers.pipeline`` / ``TextClassificationPipeline`` (4.30)."""
import json
import os

from . import _native
from .modeling import BertForSequenceClassification, PreTrainedModel

_UNSET = object()


class TextClassificationPipeline:
    """HF: ``TextClassificationPipeline``. ``pipe(text)`` -> ``[{"label", "score"}]``; with top_k
    each text's first top_k labels (None: all), best first."""

    def __init__(self, model, top_k=_UNSET, function_to_apply=None, batch_size=32):
        self.model = model
        self._top_k = top_k
        self._function = function_to_apply
        self._batch_size = batch_size

    def __call__(self, inputs, top_k=_UNSET, function_to_apply=None, text_pair=None):
        top_k = self._top_k if top_k is _UNSET else top_k
        function = function_to_apply or self._function or ""
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        pairs = [] if text_pair is None else ([text_pair] if isinstance(text_pair, str) else list(text_pair))
        if hasattr(function, "value"):
            function = function.value  # HF's ClassificationFunction enum
        k = 1 if top_k is _UNSET else (0 if top_k is None else int(top_k))
        answers = json.loads(self.model._native.classify(texts, pairs, k, str(function).lower(), self._batch_size))
        if top_k is _UNSET:
            # HF's legacy answer: the best label of each text, a list of dicts.
            return [a[0] for a in answers]
        return answers[0] if single else answers


def pipeline(task, model, tokenizer=None, device="cpu", top_k=_UNSET, function_to_apply=None, batch_size=32,
             int8=False):
    """HF: ``transformers.pipeline(task, model=..., tokenizer=..., device=..., top_k=...)``.
    task: "text-classification" (or its alias "sentiment-analysis"); model: a directory or
    a loaded model; tokenizer: a directory or tokenizer (default: the model's own files)."""
    if task not in ("text-classification", "sentiment-analysis"):
        raise ValueError(f"pipeline: task '{task}' is not supported (text-classification)")
    if isinstance(model, PreTrainedModel):
        if tokenizer is not None:
            raise ValueError("tokenizer: give a model directory with it, not a loaded model")
        loaded = model
    else:
        tokenizer_dir = getattr(tokenizer, "name_or_path", tokenizer)
        native = _native.Model.load(os.fspath(model), device=device, int8=int8,
                                    tokenizer=os.fspath(tokenizer_dir) if tokenizer_dir else "")
        if native.token_classifier:
            raise ValueError(f"{os.fspath(model)} is a token classifier; text-classification needs a "
                             "sequence classifier")
        loaded = BertForSequenceClassification(native)
    return TextClassificationPipeline(loaded, top_k=top_k, function_to_apply=function_to_apply,
                                      batch_size=batch_size)
