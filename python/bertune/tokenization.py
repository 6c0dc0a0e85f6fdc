"""AutoTokenizer: Hugging Face's BertTokenizer (and XLMRobertaTokenizer) call, exact ids.

HF: ``transformers.AutoTokenizer`` / ``PreTrainedTokenizer.__call__`` (4.30).
"""
import os
import shutil

import numpy as np

from . import _native

_SPECIAL_CLEANUPS = [
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
]


class BatchEncoding(dict):
    """HF: ``transformers.BatchEncoding`` — a dict of ``input_ids``, ``token_type_ids``,
    ``attention_mask`` whose keys are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class BertTokenizer:
    """HF: ``transformers.BertTokenizer`` (vocab.txt, tokenizer.json) or ``XLMRobertaTokenizer``
    (sentencepiece.bpe.model), loaded from a tokenizer or model directory."""

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    padding_side = "right"

    def __init__(self, directory, model_max_length=512):
        self.name_or_path = str(directory)
        self._native = _native.Tokenizer.load(str(directory))
        self.model_max_length = model_max_length
        names = {os.path.basename(f) for f in _native.tokenizer_files(str(directory))}
        if "vocab.txt" not in names and "sentencepiece.bpe.model" in names:
            self.model_input_names = ["input_ids", "attention_mask"]  # XLMRobertaTokenizer's: no token types

    @property
    def vocab_size(self):
        return self._native.vocab_size

    def __len__(self):
        return self._native.vocab_size

    @property
    def pad_token_id(self):
        return self._native.pad_id

    @property
    def cls_token_id(self):
        return self._native.cls_id

    @property
    def sep_token_id(self):
        return self._native.sep_id

    @property
    def unk_token_id(self):
        return self._native.unk_id

    @property
    def mask_token_id(self):
        return self._native.mask_id

    @property
    def all_special_ids(self):
        return sorted({self.unk_token_id, self.sep_token_id, self.pad_token_id, self.cls_token_id, self.mask_token_id})

    def tokenize(self, text):
        """HF: ``tokenize(text)`` — the word pieces, no [CLS]/[SEP]."""
        return self._native.tokenize(text)

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        """HF: ``convert_ids_to_tokens`` — one id gives one token, a list a list."""
        if isinstance(ids, (int, np.integer)):
            return self._native.id_to_token(int(ids))
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._native.id_to_token(int(i)) for i in ids if int(i) not in special]

    def convert_tokens_to_ids(self, tokens):
        """HF: ``convert_tokens_to_ids`` — an absent token is the [UNK] id."""
        if isinstance(tokens, str):
            i = self._native.token_to_id(tokens)
            return i if i >= 0 else self.unk_token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=True):
        """HF: ``decode`` — WordPiece tokens joined, "##" continuations glued to their word."""
        if isinstance(token_ids, np.ndarray):
            token_ids = token_ids.tolist()
        tokens = self.convert_ids_to_tokens(list(token_ids), skip_special_tokens=skip_special_tokens)
        text = " ".join(tokens).replace(" ##", "").strip()
        if clean_up_tokenization_spaces:
            for before, after in _SPECIAL_CLEANUPS:
                text = text.replace(before, after)
        return text

    def batch_decode(self, sequences, **kwargs):
        """HF: ``batch_decode``."""
        return [self.decode(s, **kwargs) for s in sequences]

    def __call__(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=None,
                 max_length=None, return_tensors=None, return_token_type_ids=None, return_attention_mask=None):
        """HF: ``tokenizer(text, text_pair, padding, truncation, max_length, return_tensors)``.

        text: a string or a list of strings (text_pair likewise). padding: False |
        True / "longest" | "max_length" (right side, the pad id). truncation: True /
        "longest_first" cuts pairs a token at a time off the longer side to max_length (the
        model's maximum when None). return_tensors: None (lists) or "np" (int64 arrays).
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if text_pair is None:
            pairs = []
        else:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if single != isinstance(text_pair, str):
                raise ValueError("text and text_pair must both be strings or both be lists")
        for t in texts + pairs:
            if not isinstance(t, str):
                raise ValueError(f"text: expected str or a list of str, got {type(t).__name__}")
        limit = self._truncation_length(truncation, max_length)
        encoded = self._native.encode(texts, pairs, limit, add_special_tokens)
        rows = {"input_ids": [list(ids) for ids, _ in encoded],
                "token_type_ids": [list(types) for _, types in encoded],
                "attention_mask": [[1] * len(ids) for ids, _ in encoded]}
        pad_to = self._padding_length(padding, max_length, rows["input_ids"])
        if pad_to is not None:
            fill = {"input_ids": self.pad_token_id, "token_type_ids": 0, "attention_mask": 0}
            for key, values in rows.items():
                for row in values:
                    row.extend([fill[key]] * (pad_to - len(row)))
        if return_token_type_ids is False or (return_token_type_ids is None
                                                and "token_type_ids" not in self.model_input_names):
            del rows["token_type_ids"]
        if return_attention_mask is False:
            del rows["attention_mask"]
        if return_tensors == "np":
            lengths = {len(r) for r in rows["input_ids"]}
            if len(lengths) > 1:
                raise ValueError("return_tensors='np' needs rows of one length: pass padding=True "
                                 "(or padding='max_length')")
            out = {k: np.array(v, dtype=np.int64).reshape(len(v), -1) for k, v in rows.items()}
        elif return_tensors is None:
            out = {k: (v[0] if single else v) for k, v in rows.items()}
        else:
            raise ValueError(f"return_tensors: '{return_tensors}' is not supported (None or 'np')")
        return BatchEncoding(out)

    def _truncation_length(self, truncation, max_length):
        if truncation in (None, False, "do_not_truncate"):
            if truncation is None and max_length is not None:
                return max_length  # HF: max_length alone truncates (longest_first), with a warning
            return 0
        if truncation not in (True, "longest_first"):
            raise ValueError(f"truncation: '{truncation}' is not supported (True, 'longest_first' or False)")
        return self.model_max_length if max_length is None else max_length

    def _padding_length(self, padding, max_length, ids):
        if padding in (False, None, "do_not_pad"):
            return None
        if padding in (True, "longest"):
            return max(len(r) for r in ids)
        if padding == "max_length":
            return self.model_max_length if max_length is None else max_length
        raise ValueError(f"padding: '{padding}' is not one of True, 'longest', 'max_length', False")

    def save_pretrained(self, save_directory):
        """HF: ``save_pretrained`` — the tokenizer's files copied into save_directory."""
        os.makedirs(save_directory, exist_ok=True)
        written = []
        for f in _native.tokenizer_files(self.name_or_path):
            target = os.path.join(save_directory, os.path.basename(f))
            if os.path.abspath(f) != os.path.abspath(target):
                shutil.copyfile(f, target)
            written.append(target)
        return tuple(written)


class AutoTokenizer:
    """HF: ``transformers.AutoTokenizer``."""

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path, model_max_length=None, **kwargs):
        """A tokenizer directory (or a model directory with its tokenizer files): vocab.txt +
        tokenizer_config.json, tokenizer.json, or sentencepiece.bpe.model."""
        directory = os.fspath(pretrained_model_name_or_path)
        if not os.path.isdir(directory):
            raise OSError(f"{directory}: not a directory (bertune loads local tokenizer directories only)")
        if model_max_length is None:
            model_max_length = _config_max_length(directory)
        return BertTokenizer(directory, model_max_length=model_max_length)


def _config_max_length(directory):
    """tokenizer_config.json's model_max_length when it has a sensible one, else 512."""
    import json
    path = os.path.join(directory, "tokenizer_config.json")
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f).get("model_max_length")
    except (OSError, ValueError):
        return 512
    return value if isinstance(value, int) and 0 < value < 1_000_000 else 512
