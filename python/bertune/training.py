"""TrainingArguments and Trainer: ``bertune train`` from Python, with Hugging Face's names.

HF: ``transformers.TrainingArguments``, ``Trainer``, ``TrainerCallback``,
``EarlyStoppingCallback`` (4.30). The run is the command line's run — the same options
table, the same loop, the same log.jsonl and checkpoints — with the datasets handed over in
memory and the callbacks called from the native loop.
"""
import difflib
import json
import os
import shutil
from collections import namedtuple

import numpy as np

from . import _native

TrainOutput = namedtuple("TrainOutput", ["global_step", "training_loss", "metrics"])
PredictionOutput = namedtuple("PredictionOutput", ["predictions", "label_ids", "metrics"])
EvalPrediction = namedtuple("EvalPrediction", ["predictions", "label_ids"])

_FIELDS = {key: (json.loads(default), help_, type_) for key, default, help_, type_ in _native.option_fields()}
_ALIASES = {"evaluation_strategy": "eval_strategy"}
# HF arguments that only concern integrations bertune does not have; accepted, without effect.
_IGNORED = {"report_to", "logging_dir", "push_to_hub", "run_name"}


class TrainingArguments:
    """HF: ``transformers.TrainingArguments`` — the same names and transformers 4.30's
    defaults, checked as ``bertune train`` checks its flags (a ``ValueError`` naming the
    option). An unknown name is a ``TypeError`` naming the nearest one.
    ``evaluation_strategy`` is accepted for ``eval_strategy``."""

    def __init__(self, output_dir=None, disable_tqdm=False, **kwargs):
        given = {} if output_dir is None else {"output_dir": os.fspath(output_dir)}
        self.disable_tqdm = disable_tqdm  # True: no progress bar (tqdm) during train()
        for name, value in kwargs.items():
            if name in _IGNORED or value is None:
                continue  # None: HF's default for the options that have none, so bertune's (the same)
            key = _ALIASES.get(name, name)
            if key not in _FIELDS:
                near = difflib.get_close_matches(name, list(_FIELDS) + list(_ALIASES), n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise TypeError(f"TrainingArguments: unknown argument '{name}'{hint}")
            given[key] = _plain(value)
        self._given = given
        self._resolved = json.loads(_native.resolve_options(json.dumps(given)))

    def __getattr__(self, name):
        key = _ALIASES.get(name, name)
        resolved = self.__dict__.get("_resolved", {})
        if key in resolved:
            return resolved[key]
        raise AttributeError(f"TrainingArguments has no argument '{name}'")

    def to_dict(self):
        """Every option, under its name (training_args.json)."""
        return dict(self._resolved)

    def to_kwargs(self):
        """The options given (the rest keep their defaults)."""
        return dict(self._given)

    def __repr__(self):
        return "TrainingArguments(" + ", ".join(f"{k}={v!r}" for k, v in self._given.items()) + ")"


def _plain(value):
    """A JSON value of an argument (numpy scalars, paths and enums included)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist() if isinstance(value, np.ndarray) else value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "value") and isinstance(getattr(value, "value"), str):
        return value.value  # HF's IntervalStrategy / SchedulerType enums
    return value


class TrainerState:
    """HF: ``TrainerState`` — the run's position and its log history."""

    def __init__(self):
        self.epoch = 0.0
        self.global_step = 0
        self.max_steps = 0
        self.log_history = []
        self.best_metric = None
        self.best_model_checkpoint = None


class TrainerControl:
    """HF: ``TrainerControl``; ``should_training_stop`` stops the run at the next step boundary."""

    def __init__(self):
        self.should_training_stop = False


class TrainerCallback:
    """HF: ``TrainerCallback``. Called as ``(args, state, control, **kwargs)``: on_step_end,
    on_log (logs=), on_evaluate (metrics=), on_epoch_end, on_save; on_train_begin and
    on_train_end around the run."""

    def on_train_begin(self, args, state, control, **kwargs):
        pass

    def on_train_end(self, args, state, control, **kwargs):
        pass

    def on_step_end(self, args, state, control, **kwargs):
        pass

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        pass

    def on_epoch_end(self, args, state, control, **kwargs):
        pass

    def on_save(self, args, state, control, **kwargs):
        pass


class EarlyStoppingCallback(TrainerCallback):
    """HF: ``EarlyStoppingCallback(early_stopping_patience, early_stopping_threshold)``: stop
    when metric_for_best_model has not improved by more than the threshold for that many
    evaluations. Runs as the native loop's early stopping (the options of the same names)."""

    def __init__(self, early_stopping_patience=1, early_stopping_threshold=0.0):
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold


def _dataset_rows(dataset, columns):
    """(file, JSONL rows): a path is read by the native reader; a pandas DataFrame, a dict of
    columns, a list of dicts (or anything with to_pandas / to_dict, as datasets.Dataset) goes
    over in memory, its columns `columns` (those present) as JSONL text."""
    if dataset is None:
        return None, None
    if isinstance(dataset, (str, os.PathLike)):
        return os.fspath(dataset), None
    if hasattr(dataset, "to_pandas") and not hasattr(dataset, "to_dict"):
        dataset = dataset.to_pandas()
    if hasattr(dataset, "to_dict") and hasattr(dataset, "columns"):  # a DataFrame
        records = dataset.to_dict("records")
    elif isinstance(dataset, dict):
        names = list(dataset)
        lengths = {len(dataset[n]) for n in names}
        if len(lengths) > 1:
            raise ValueError(f"dataset: the columns have different lengths ({sorted(lengths)})")
        records = [dict(zip(names, row)) for row in zip(*(dataset[n] for n in names))]
    elif isinstance(dataset, (list, tuple)):
        records = list(dataset)
    else:
        raise ValueError("dataset: expected a file path, a pandas DataFrame, a dict of columns or a list of dicts, "
                         f"got {type(dataset).__name__}")
    lines = []
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"dataset: row {i + 1} is a {type(r).__name__}, not a dict")
        lines.append(json.dumps({c: _plain(r[c]) for c in columns if c in r}, ensure_ascii=False))
    return None, "\n".join(lines) + ("\n" if lines else "")


def _progress_bar(args):
    """A tqdm bar over the steps (HF's), unless disable_tqdm or tqdm is not installed."""
    if args.disable_tqdm:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=args.max_steps if args.max_steps > 0 else None, unit="step", desc="train")


class _Observer:
    """The native loop's events, handed to compute_metrics and the callbacks."""

    def __init__(self, trainer, progress=None):
        self.trainer = trainer
        self.progress = progress
        self.wants_logits = trainer.compute_metrics is not None

    def _call(self, event, **kwargs):
        t = self.trainer
        for cb in t.callbacks:
            getattr(cb, event)(t.args, t.state, t.control, **kwargs)
        return bool(t.control.should_training_stop)

    def on_step_end(self, step):
        self.trainer.state.global_step = step
        if self.progress is not None:
            self.progress.update(step - self.progress.n)
        return self._call("on_step_end")

    def on_log(self, record):
        logs = json.loads(record)
        self.trainer.state.log_history.append(logs)
        if "epoch" in logs:
            self.trainer.state.epoch = logs["epoch"]
        return self._call("on_log", logs=logs)

    def on_evaluate(self, metrics, logits, labels):
        metrics = json.loads(metrics)
        metrics.update(self.trainer._computed_metrics(logits, labels, "eval"))
        stop = self._call("on_evaluate", metrics=metrics)
        return json.dumps(metrics), stop

    def on_epoch_end(self, epoch):
        self.trainer.state.epoch = epoch
        return self._call("on_epoch_end")

    def on_save(self, checkpoint):
        return self._call("on_save", checkpoint=checkpoint)


class Trainer:
    """HF: ``transformers.Trainer`` for sequence and token classification.

    model: a model directory (or a model from ``AutoModelForSequenceClassification``);
    args: TrainingArguments; train_dataset / eval_dataset: a file (TSV as NSMC, CSV, JSONL), a
    pandas DataFrame, a dict of columns or a list of dicts with `text_column` (NSMC's
    "document"), `label_column` ("label") and, for pairs, `text_pair_column` — with
    ``task="token-classification"`` a tagged file or rows of "tokens" and "tags" (lists of
    words and their tags, as tagged JSONL); tokenizer: a
    directory or tokenizer (default: the model's); compute_metrics(EvalPrediction) -> dict
    at every evaluation, merged into its metrics; callbacks: TrainerCallback instances.
    """

    def __init__(self, model=None, args=None, train_dataset=None, eval_dataset=None, tokenizer=None,
                 compute_metrics=None, callbacks=None, text_column=None, label_column=None, text_pair_column=None):
        self.args = args if args is not None else TrainingArguments(output_dir="trainer_output")
        self.model_dir = None if model is None else os.fspath(getattr(model, "name_or_path", model))
        self.tokenizer_dir = None if tokenizer is None else os.fspath(getattr(tokenizer, "name_or_path", tokenizer))
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.compute_metrics = compute_metrics
        self.callbacks = list(callbacks or [])
        self.state = TrainerState()
        self.control = TrainerControl()
        self._columns = {"text_column": text_column or self.args.text_column,
                         "label_column": label_column if label_column is not None else self.args.label_column,
                         "text_pair_column": text_pair_column or self.args.text_pair_column}
        self._final_model_dir = None

    def add_callback(self, callback):
        """HF: ``add_callback`` (a class is instantiated)."""
        self.callbacks.append(callback() if isinstance(callback, type) else callback)

    def _kwargs(self):
        kwargs = self.args.to_kwargs()
        if self.model_dir is not None:
            kwargs["model"] = self.model_dir
        if self.tokenizer_dir is not None:
            kwargs["tokenizer"] = self.tokenizer_dir
        kwargs.update({k: v for k, v in self._columns.items() if v})
        for cb in self.callbacks:
            if isinstance(cb, EarlyStoppingCallback):
                kwargs["early_stopping_patience"] = cb.early_stopping_patience
                kwargs["early_stopping_threshold"] = cb.early_stopping_threshold
        return kwargs

    def _data_columns(self):
        if self.args.task == "token-classification":
            return ["tokens", "tags"]  # the tagged JSONL's keys (docs/file-formats.md)
        return [c for c in (self._columns["text_column"], self._columns["text_pair_column"],
                            self._columns["label_column"]) if c]

    def train(self, resume_from_checkpoint=None):
        """HF: ``train(resume_from_checkpoint=None | True | path)`` -> ``TrainOutput``. Writes
        output_dir as ``bertune train`` does (log.jsonl, checkpoint-N/, final/). Ctrl-C stops
        at the next step boundary (KeyboardInterrupt naming the last checkpoint)."""
        kwargs = self._kwargs()
        if resume_from_checkpoint:
            kwargs["resume_from_checkpoint"] = "true" if resume_from_checkpoint is True else \
                os.fspath(resume_from_checkpoint)
        columns = self._data_columns()
        rows = {}
        for split, dataset, name in (("train", self.train_dataset, "train_dataset"),
                                     ("eval", self.eval_dataset, "eval_dataset")):
            file, data = _dataset_rows(dataset, columns)
            if file is not None:
                kwargs[f"{split}_file"] = file
            elif data is not None:
                kwargs[f"{split}_file"] = name  # names the rows in messages: "train_dataset:ROW: ..."
            rows[split] = data
        self.state = TrainerState()
        self.control = TrainerControl()
        self._call("on_train_begin")
        progress = _progress_bar(self.args)
        try:
            result = json.loads(_native.train(json.dumps(kwargs), rows["train"], rows["eval"], None,
                                              _Observer(self, progress)))
        finally:
            if progress is not None:
                progress.close()
        summary = result["summary"]
        self.state.log_history = result["log_history"]
        self.state.global_step = summary["global_step"]
        self.state.epoch = summary["epoch"]
        self.state.best_model_checkpoint = result["best_model_checkpoint"]
        self._final_model_dir = result["final_model_dir"]
        self._call("on_train_end")
        metrics = {k: v for k, v in summary.items() if k not in ("global_step", "training_loss")}
        metrics["train_loss"] = summary["training_loss"]
        return TrainOutput(summary["global_step"], summary["training_loss"], metrics)

    def _call(self, event, **kwargs):
        for cb in self.callbacks:
            getattr(cb, event, lambda *a, **k: None)(self.args, self.state, self.control, **kwargs)

    def _computed_metrics(self, logits, labels, prefix):
        if self.compute_metrics is None:
            return {}
        extra = self.compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
        if not isinstance(extra, dict):
            raise TypeError(f"compute_metrics must return a dict, not {type(extra).__name__}")
        return {(k if k.startswith(prefix + "_") else f"{prefix}_{k}"): _plain(v) for k, v in extra.items()}

    def _run_eval(self, dataset, prefix):
        model_dir = self._final_model_dir or self.model_dir
        if model_dir is None:
            raise ValueError("Trainer: no model to evaluate (pass model=, or train first)")
        file, rows = _dataset_rows(dataset, self._data_columns())
        kwargs = {k: v for k, v in self._kwargs().items() if k != "resume_from_checkpoint"}
        ev = _native.evaluate(model_dir, json.dumps(kwargs), rows, file or f"{prefix}_dataset", prefix + "_")
        metrics = json.loads(ev.record)
        labelled = ev.labelled
        if labelled:
            metrics.update(self._computed_metrics(ev.logits, ev.labels, prefix))
        return ev, metrics, labelled

    def evaluate(self, eval_dataset=None, metric_key_prefix="eval"):
        """HF: ``evaluate()`` -> dict (eval_loss, eval_accuracy, eval_f1, ..., compute_metrics'),
        of the trained model (output_dir/final/), else the model given."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("Trainer.evaluate: no eval_dataset")
        _, metrics, _ = self._run_eval(dataset, metric_key_prefix)
        self.state.log_history.append(dict(metrics, epoch=self.state.epoch, step=self.state.global_step))
        self._call("on_evaluate", metrics=metrics)
        return metrics

    def predict(self, test_dataset, metric_key_prefix="test"):
        """HF: ``predict(ds)`` -> ``PredictionOutput(predictions [n, num_labels] logits,
        label_ids (None when unlabelled), metrics)``; a token classifier's [n, positions, num_labels]
        and [n, positions] (-100 where a position has no label; its logits there are 0)."""
        ev, metrics, labelled = self._run_eval(test_dataset, metric_key_prefix)
        return PredictionOutput(np.asarray(ev.logits), np.asarray(ev.labels) if labelled else None, metrics)

    def save_model(self, output_dir=None):
        """HF: ``save_model(dir)`` — the trained model (final/) with its tokenizer files."""
        target = os.fspath(output_dir or self.args.output_dir)
        if self._final_model_dir is None:
            if self.model_dir is None:
                raise ValueError("Trainer.save_model: no model (pass model=, or train first)")
            _native.Model.load(self.model_dir).save_pretrained(target)
            return
        if os.path.abspath(target) == os.path.abspath(self._final_model_dir):
            return
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(self._final_model_dir):
            src = os.path.join(self._final_model_dir, name)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(target, name))
