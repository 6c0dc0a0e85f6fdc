"""Type stub of bertune._native (python/src): the native engine under the bertune package."""
from typing import Any, Optional, Sequence

import numpy as np
import numpy.typing as npt

__version__: str

class Tokenizer:
    """text::Tokenizer (HF BertTokenizer / XLMRobertaTokenizer)."""
    @staticmethod
    def load(dir: str) -> "Tokenizer": ...
    def encode(self, texts: Sequence[str], pairs: Sequence[str], max_length: int,
               add_special_tokens: bool) -> list[tuple[list[int], list[int]]]: ...
    def tokenize(self, text: str) -> list[str]: ...
    def id_to_token(self, id: int) -> str: ...
    def token_to_id(self, token: str) -> int: ...
    vocab_size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    do_lower_case: bool

def tokenizer_files(dir: str) -> list[str]: ...

class Model:
    """infer::Classifier: a model directory loaded for inference."""
    @staticmethod
    def load(dir: str, device: str = "cpu", int8: bool = False, max_length: int = 0,
             tokenizer: str = "", precision: str = "") -> "Model": ...
    def forward(self, input_ids: npt.NDArray[np.int64], attention_mask: Optional[npt.NDArray[np.int64]] = None,
                token_type_ids: Optional[npt.NDArray[np.int64]] = None) -> npt.NDArray[np.float32]: ...
    def classify(self, texts: Sequence[str], pairs: Sequence[str], top_k: int, function_to_apply: str = "",
                 batch_size: int = 32) -> str: ...
    def entities(self, texts: Sequence[str], aggregation_strategy: str = "none", ignore_labels: Sequence[str] = ("O",),
                 batch_size: int = 32) -> str: ...
    def save_pretrained(self, dir: str) -> None: ...
    config_json: str
    token_classifier: bool
    num_labels: int
    label_names: list[str]
    int8: bool
    device: str
    dir: str

def mpi_built() -> bool: ...
def option_fields() -> list[tuple[str, str, str, str]]: ...
def resolve_options(kwargs_json: str) -> str: ...
def train(kwargs_json: str, train_rows: Optional[str], eval_rows: Optional[str], test_rows: Optional[str],
          observer: Any) -> str: ...

class Evaluation:
    record: str
    logits: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int32]
    labelled: bool

def evaluate(model_dir: str, kwargs_json: str, rows: Optional[str], file: str, prefix: str) -> Evaluation: ...
