"""pipeline("text-classification"): the label scores ``bertune predict`` and ``serve``
answer. HF: ``transformers.pipeline`` / ``TextClassificationPipeline`` (4.30)."""
import json
import os

from . import _native
from .modeling import BertForSequenceClassification, BertForTokenClassification, PreTrainedModel

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
        """HF 4.30's inputs: a text; a sentence pair ``{"text": ..., "text_pair": ...}``; a list of
        either (an item that is a list is refused, as transformers refuses it, but for its
        ``[[text, text_pair]]``); or texts with ``text_pair=`` (a str: every text's second text). Its answers: without top_k, a text gives ``[{"label", "score"}]``, a pair
        ``{"label", "score"}``, a list one such dict per item; with top_k (here or at
        construction) each item's first top_k labels, best first — and a text alone with the
        construction's top_k is wrapped in one more list, as transformers does."""
        legacy = top_k is _UNSET  # transformers: "top_k" not among the call's arguments
        top_k = self._top_k if legacy else top_k
        function = function_to_apply or self._function or ""
        single = isinstance(inputs, (str, dict))
        items = [inputs] if single else list(inputs)  # a list, tuple or generator of items
        texts, pairs = [], []
        for i, item in enumerate(items):
            text, pair = _text_and_pair(item, f"inputs[{i}]" if not single else "inputs")
            texts.append(text)
            pairs.append(pair)
        if text_pair is not None:  # a str is every text's second text (HF's tokenizer argument); a list, each one's
            given = [text_pair] * len(texts) if isinstance(text_pair, str) else list(text_pair)
            if len(given) != len(texts) or any(p is not None for p in pairs):
                raise ValueError(f"text_pair: {len(given)} second texts for {len(texts)} texts")
            pairs = given
        if hasattr(function, "value"):
            function = function.value  # HF's ClassificationFunction enum
        k = 1 if top_k is _UNSET else (0 if top_k is None else int(top_k))
        answers = [None] * len(texts)
        for with_pair in (False, True):  # texts alone and pairs, each in batches of their own
            at = [i for i, p in enumerate(pairs) if (p is not None) == with_pair]
            if not at:
                continue
            got = json.loads(self.model._native.classify([texts[i] for i in at], [pairs[i] for i in at] if with_pair
                                                         else [], k, str(function).lower(), self._batch_size))
            for i, a in zip(at, got):
                answers[i] = a[0] if top_k is _UNSET else a  # HF's legacy answer: the best label, a dict
        if not single:
            return answers
        return [answers[0]] if isinstance(inputs, str) and legacy else answers[0]


def _text_and_pair(item, where):
    """One item of the pipeline's inputs as (text, second text or None), as HF's preprocess reads it."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict):
        unknown = sorted(set(item) - {"text", "text_pair"})
        if unknown or not isinstance(item.get("text"), str):
            raise ValueError(f"{where}: a sentence pair is {{\"text\": str, \"text_pair\": str}}, got keys "
                             f"{sorted(item)}")
        pair = item.get("text_pair")
        if pair is not None and not isinstance(pair, str):
            raise ValueError(f"{where}: text_pair must be a str, got {type(pair).__name__}")
        return item["text"], pair
    if isinstance(item, list) and len(item) == 1 and isinstance(item[0], list) and len(item[0]) == 2:
        return item[0][0], item[0][1]  # [[text, text_pair]]: kept by transformers for backward compatibility
    if isinstance(item, (list, tuple)):
        raise ValueError("The pipeline received invalid inputs, if you are trying to send text pairs, you can try to "
                         "send a dictionary `{\"text\": \"My text\", \"text_pair\": \"My pair\"}` in order to send a "
                         "text pair.")
    raise ValueError(f"{where}: expected a str or a {{\"text\", \"text_pair\"}} dict, got {type(item).__name__}")


class TokenClassificationPipeline:
    """HF: ``TokenClassificationPipeline`` (``pipeline("ner")``). ``pipe(text)`` -> the text's
    entities: with ``aggregation_strategy="none"`` (transformers' default) one record per word piece
    ``{"entity", "score", "index", "word", "start", "end"}``; with ``"simple"``, ``"first"``,
    ``"average"`` or ``"max"`` grouped spans ``{"entity_group", "score", "word", "start", "end"}``,
    as ``bertune predict`` and ``serve`` give them. Labels in ``ignore_labels`` (``["O"]``) are
    left out. A list of texts gives a list per text."""

    def __init__(self, model, aggregation_strategy="none", ignore_labels=None, batch_size=32):
        self.model = model
        self._aggregation = aggregation_strategy
        self._ignore = ignore_labels
        self._batch_size = batch_size

    def __call__(self, inputs, aggregation_strategy=None, ignore_labels=None):
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"inputs[{i}]: expected a str, got {type(text).__name__}")
        aggregation = aggregation_strategy or self._aggregation
        if hasattr(aggregation, "value"):
            aggregation = aggregation.value  # HF's AggregationStrategy enum
        ignore = ignore_labels if ignore_labels is not None else self._ignore
        answers = json.loads(self.model._native.entities(texts, str(aggregation),
                                                         ["O"] if ignore is None else list(ignore), self._batch_size))
        return answers[0] if single else answers


_TASKS = {"text-classification": "text", "sentiment-analysis": "text", "token-classification": "token",
          "ner": "token"}


def pipeline(task, model, tokenizer=None, device="cpu", top_k=_UNSET, function_to_apply=None, batch_size=32,
             int8=False, aggregation_strategy="none", ignore_labels=None):
    """HF: ``transformers.pipeline(task, model=..., tokenizer=..., device=..., top_k=...)``.
    task: "text-classification" (alias "sentiment-analysis") or "token-classification" (alias
    "ner"); model: a directory or a loaded model; tokenizer: a directory or tokenizer (default:
    the model's own files)."""
    if task not in _TASKS:
        raise ValueError(f"pipeline: task '{task}' is not supported ({', '.join(_TASKS)})")
    token = _TASKS[task] == "token"
    if isinstance(model, PreTrainedModel):
        if tokenizer is not None:
            raise ValueError("tokenizer: give a model directory with it, not a loaded model")
        loaded = model
        name = loaded._native.dir
    else:
        tokenizer_dir = getattr(tokenizer, "name_or_path", tokenizer)
        native = _native.Model.load(os.fspath(model), device=device, int8=int8,
                                    tokenizer=os.fspath(tokenizer_dir) if tokenizer_dir else "")
        loaded = (BertForTokenClassification if native.token_classifier else BertForSequenceClassification)(native)
        name = os.fspath(model)
    if loaded._native.token_classifier != token:
        have, need = ("token", "sequence") if loaded._native.token_classifier else ("sequence", "token")
        raise ValueError(f"{name} is a {have} classifier; {task} needs a {need} classifier")
    if token:
        return TokenClassificationPipeline(loaded, aggregation_strategy=aggregation_strategy,
                                           ignore_labels=ignore_labels, batch_size=batch_size)
    return TextClassificationPipeline(loaded, top_k=top_k, function_to_apply=function_to_apply,
                                      batch_size=batch_size)
