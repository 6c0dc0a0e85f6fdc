"""bertune from Python: Hugging Face's names over bertune's native engine.

    from bertune import AutoTokenizer, AutoModelForSequenceClassification, pipeline
    from bertune import TrainingArguments, Trainer, EarlyStoppingCallback

Every class runs the same native code as the ``bertune`` command (no subprocess): a
Trainer run is a ``bertune train`` run, a pipeline answers what ``bertune predict`` does.
"""
import pkgutil as _pkgutil

# The native module may lie in another bertune/ folder on sys.path (a build tree:
# PYTHONPATH=python:build/python); an installed package holds both in one folder.
__path__ = _pkgutil.extend_path(__path__, __name__)

from . import _native  # noqa: E402
from .tokenization import AutoTokenizer, BatchEncoding, BertTokenizer  # noqa: E402
from .modeling import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PreTrainedModel,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from .pipelines import TextClassificationPipeline, pipeline  # noqa: E402
from .training import (  # noqa: E402
    EarlyStoppingCallback,
    EvalPrediction,
    PredictionOutput,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
    TrainOutput,
)

__version__ = _native.__version__

__all__ = [
    "AutoTokenizer",
    "BatchEncoding",
    "BertTokenizer",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "PreTrainedModel",
    "SequenceClassifierOutput",
    "TokenClassifierOutput",
    "TextClassificationPipeline",
    "pipeline",
    "EarlyStoppingCallback",
    "EvalPrediction",
    "PredictionOutput",
    "Trainer",
    "TrainerCallback",
    "TrainerControl",
    "TrainerState",
    "TrainingArguments",
    "TrainOutput",
]
