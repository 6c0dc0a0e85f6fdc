"""bertune from Python: Hugging Face's names over bertune's native engine.

    from bertune import AutoTokenizer, AutoModelForSequenceClassification, pipeline
    from bertune import TrainingArguments, Trainer, EarlyStoppingCallback

Every class runs the same native code as the ``bertune`` command (no subprocess): a
Trainer run is a ``bertune train`` run, a pipeline answers what ``bertune predict`` does.
"""
import os as _os
import pkgutil as _pkgutil

# The native kernels share one OpenMP pool (libgomp), which reads its wait policy once, when it
# loads with the module below. Its default spins at every barrier and collapses when anything
# else shares the cores (training steps several times slower on 2 cores); `bertune` re-executes
# itself with the passive policy for the same reason. Unless the user chose one.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["OMP_WAIT_POLICY"] = "passive"

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
from .pipelines import TextClassificationPipeline, TokenClassificationPipeline, pipeline  # noqa: E402
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
    "TokenClassificationPipeline",
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
