"""TrainingArguments and Trainer: the run of `bertune train` (same losses), datasets in
memory, compute_metrics, callbacks, early stopping, Ctrl-C and resume."""
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import bertune
from conftest import NSMC, REPO, SHARED

BINARY = REPO / "build" / "bertune"
TINY = {"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 64, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1}


@pytest.fixture
def tiny(shared, tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def nsmc_rows(n):
    """The first n NSMC training reviews as the native reader reads them (quotes kept)."""
    df = pd.read_csv(NSMC / "ratings_train.txt", sep="\t", quoting=3, keep_default_na=False, nrows=n)
    return df[["document", "label"]]


def base_args(tiny, out, **more):
    args = dict(output_dir=str(out), model_config=str(tiny), max_steps=6, logging_steps=2,
                per_device_train_batch_size=8, save_strategy="no", max_length=32, threads=2)
    args.update(more)
    return args


def losses(log):
    return [r["loss"] for r in map(json.loads, open(log, encoding="utf-8")) if "loss" in r]


def test_same_losses_as_the_command_line(tiny, tmp_path):
    train = tmp_path / "train.tsv"
    with open(NSMC / "ratings_train.txt", encoding="utf-8") as f:
        train.write_text("".join(next(f) for _ in range(201)), encoding="utf-8")
    args = base_args(tiny, tmp_path / "py", train_samples=64, train_file=str(train))
    out = bertune.Trainer(args=bertune.TrainingArguments(**args)).train()
    assert out.global_step == 6 and np.isfinite(out.training_loss)
    flags = []
    for key, value in base_args(tiny, tmp_path / "cli", train_samples=64, train_file=str(train)).items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    subprocess.run([str(BINARY), "train", *flags], check=True, capture_output=True)
    py, cli = losses(tmp_path / "py" / "log.jsonl"), losses(tmp_path / "cli" / "log.jsonl")
    assert len(py) == 3 and py == cli
    # The same rows in memory (a DataFrame, a dict of columns, a list of dicts) give the same run.
    df = nsmc_rows(200)
    for i, data in enumerate([df, {c: list(df[c]) for c in df.columns}, df.to_dict("records")]):
        d = tmp_path / f"mem{i}"
        trainer = bertune.Trainer(args=bertune.TrainingArguments(**base_args(tiny, d, train_samples=64)),
                                  train_dataset=data)
        trainer.train()
        assert losses(d / "log.jsonl") == py
    assert [r["loss"] for r in trainer.state.log_history if "loss" in r] == py


def test_arguments_are_checked(tiny, tmp_path):
    args = bertune.TrainingArguments(output_dir=str(tmp_path), learning_rate=2e-5)
    assert args.learning_rate == 2e-5 and args.num_train_epochs == 3.0 and args.per_device_train_batch_size == 8
    assert args.warmup_ratio == 0.0 and args.weight_decay == 0.0 and args.seed == 42
    with pytest.raises(TypeError, match="did you mean 'learning_rate'"):
        bertune.TrainingArguments(output_dir=str(tmp_path), learnig_rate=1e-3)
    with pytest.raises(ValueError, match="eval-steps|eval_steps"):
        bertune.TrainingArguments(output_dir=str(tmp_path), evaluation_strategy="steps", eval_steps=0)
    # None, HF's default for these, keeps the default
    unset = bertune.TrainingArguments(output_dir=str(tmp_path), save_total_limit=None, eval_steps=None,
                                      metric_for_best_model=None, ddp_bucket_cap_mb=None)
    assert unset.to_kwargs() == {"output_dir": str(tmp_path)}
    assert unset.ddp_bucket_cap_mb == bertune.TrainingArguments(output_dir=str(tmp_path)).ddp_bucket_cap_mb
    rows = [{"document": "좋다", "label": 1}, {"document": "별로", "label": 7}]
    trainer = bertune.Trainer(args=bertune.TrainingArguments(**base_args(tiny, tmp_path / "bad")), train_dataset=rows)
    with pytest.raises(ValueError, match="train_dataset:2"):
        trainer.train()
    tagged = bertune.TrainingArguments(**base_args(tiny, tmp_path / "tags", task="token-classification"))
    with pytest.raises(ValueError, match='train_dataset:1: no "tokens"'):  # sentences, not texts
        bertune.Trainer(args=tagged, train_dataset=rows).train()


def klue_ner_sentences(n):
    """The first n sentences of KLUE-NER's training part as (words, tags), as the tagged reader reads them."""
    sentences, words, tags = [], [], []
    with open(SHARED / "data" / "klue" / "ner_train.tsv", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("## "):
                continue
            if not line:
                if words:
                    sentences.append((words, tags))
                    words, tags = [], []
                if len(sentences) == n:
                    break
                continue
            fields = line.split("\t")
            words.append(fields[0])
            tags.append(fields[-1])
    return sentences


def test_token_classification_rows_in_memory_train_as_the_file(tiny, tmp_path):
    """task="token-classification" takes rows of tokens and tags (a list of dicts, a DataFrame) and
    trains as on the same sentences in a tagged JSONL file, evaluating entity F1 every epoch."""
    sentences = klue_ner_sentences(40)
    rows = [{"tokens": w, "tags": t} for w, t in sentences]
    data = tmp_path / "ner.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    more = dict(task="token-classification", evaluation_strategy="epoch", num_train_epochs=2, max_steps=-1)
    bertune.Trainer(args=bertune.TrainingArguments(**base_args(tiny, tmp_path / "file", **more)),
                    train_dataset=data, eval_dataset=data).train()
    from_file = losses(tmp_path / "file" / "log.jsonl")
    assert len(from_file) >= 2
    def token_accuracy(p):  # compute_metrics as transformers' token-classification example writes it
        predicted, labels = np.argmax(p.predictions, axis=2), p.label_ids
        assert p.predictions.shape[:2] == labels.shape and p.predictions.shape[2] == len(tag_names)
        mask = labels != -100
        return {"my_accuracy": float((predicted[mask] == labels[mask]).mean())}

    tag_names = sorted({t for _, tags in sentences for t in tags})
    for i, dataset in enumerate([rows, pd.DataFrame(rows)]):
        trainer = bertune.Trainer(args=bertune.TrainingArguments(**base_args(tiny, tmp_path / f"mem{i}", **more)),
                                  train_dataset=dataset, eval_dataset=rows[:10], compute_metrics=token_accuracy)
        trainer.train()
        assert losses(tmp_path / f"mem{i}" / "log.jsonl") == from_file
        evals = [r for r in trainer.state.log_history if "eval_f1" in r]
        assert len(evals) == 2 and all(0 <= r["eval_f1"] <= 1 for r in evals)
        # The arrays compute_metrics gets are the evaluation's: its token accuracy is the loop's.
        assert all(r["eval_my_accuracy"] == pytest.approx(r["eval_accuracy"], abs=1e-12) for r in evals)
    metrics = trainer.evaluate()  # the final model on eval_dataset: the last evaluation's figures
    for key in ("eval_f1", "eval_precision", "eval_recall", "eval_accuracy", "eval_my_accuracy"):
        assert metrics[key] == pytest.approx(evals[-1][key], rel=1e-6), key
    out = trainer.predict(rows[:3])
    assert out.predictions.ndim == 3 and out.label_ids.shape == out.predictions.shape[:2]
    assert (out.label_ids[:, 0] == -100).all()  # [CLS]
    assert out.metrics["test_f1"] == pytest.approx(trainer.evaluate(rows[:3], metric_key_prefix="test")["test_f1"])
    with pytest.raises(ValueError, match="sentences without tags"):
        trainer.predict([{"tokens": ["경", "찰"]}])
    config = json.loads((tmp_path / "mem0" / "final" / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert sorted(config["label2id"]) == sorted({t for _, tags in sentences for t in tags})


class Recorder(bertune.TrainerCallback):
    def __init__(self, stop_at=None):
        self.events, self.stop_at = [], stop_at

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.events.append(("log", state.global_step, dict(logs)))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.events.append(("evaluate", state.global_step, dict(metrics)))

    def on_save(self, args, state, control, **kwargs):
        self.events.append(("save", state.global_step, kwargs["checkpoint"]))

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.stop_at:
            control.should_training_stop = True


def test_compute_metrics_callbacks_evaluate_predict(tiny, tmp_path):
    df = nsmc_rows(120)
    seen = []

    def compute_metrics(p):
        seen.append((p.predictions.shape, p.label_ids.shape))
        return {"mean_logit": float(p.predictions.mean()),
                "my_accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}

    rec = Recorder(stop_at=5)
    args = bertune.TrainingArguments(**base_args(tiny, tmp_path / "run", max_steps=8, evaluation_strategy="steps",
                                                 eval_steps=2, save_strategy="steps", save_steps=2))
    trainer = bertune.Trainer(args=args, train_dataset=df.iloc[:80], eval_dataset=df.iloc[80:],
                              compute_metrics=compute_metrics, callbacks=[rec])
    out = trainer.train()
    assert out.global_step == 5  # stopped by the callback after step 5
    assert seen == [((40, 2), (40,))] * 2
    evals = [e for e in rec.events if e[0] == "evaluate"]
    assert [e[1] for e in evals] == [2, 4]
    assert all("eval_mean_logit" in e[2] and "eval_accuracy" in e[2] for e in evals)
    assert evals[0][2]["eval_my_accuracy"] == pytest.approx(evals[0][2]["eval_accuracy"])
    logged = [r for r in trainer.state.log_history if "eval_loss" in r]
    assert [r["eval_mean_logit"] for r in logged] == [e[2]["eval_mean_logit"] for e in evals]
    on_disk = [json.loads(line) for line in open(tmp_path / "run" / "log.jsonl", encoding="utf-8")]
    assert [r["eval_mean_logit"] for r in on_disk if "eval_loss" in r] == [r["eval_mean_logit"] for r in logged]
    assert [e[1] for e in rec.events if e[0] == "save"] == [2, 4]
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_accuracy", "eval_mean_logit"} <= set(metrics)
    pred = trainer.predict(df.iloc[80:90])
    assert pred.predictions.shape == (10, 2) and pred.label_ids.tolist() == df["label"].iloc[80:90].tolist()
    assert pred.metrics["test_accuracy"] == pytest.approx(
        float((pred.predictions.argmax(-1) == pred.label_ids).mean()))
    trainer.save_model(tmp_path / "saved")
    model = bertune.AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert model.config["hidden_size"] == 32


def test_early_stopping_callback(tiny, tmp_path):
    df = nsmc_rows(120)
    args = bertune.TrainingArguments(**base_args(
        tiny, tmp_path / "run", max_steps=12, evaluation_strategy="steps", eval_steps=2, save_strategy="steps",
        save_steps=2, load_best_model_at_end=True, metric_for_best_model="accuracy"))
    # No accuracy improves by more than 1: the second evaluation is the patience's end.
    trainer = bertune.Trainer(args=args, train_dataset=df.iloc[:80], eval_dataset=df.iloc[80:],
                              callbacks=[bertune.EarlyStoppingCallback(1, 1.0)])
    assert trainer.train().global_step == 4


def test_ctrl_c_stops_at_a_step_boundary_and_resumes(tiny, tmp_path):
    df = nsmc_rows(100)

    class CtrlC(bertune.TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 4:
                os.kill(os.getpid(), signal.SIGINT)

    args = bertune.TrainingArguments(**base_args(tiny, tmp_path / "run", save_strategy="steps", save_steps=2))
    trainer = bertune.Trainer(args=args, train_dataset=df, callbacks=[CtrlC()])
    with pytest.raises(KeyboardInterrupt, match="checkpoint-4"):
        trainer.train()
    assert (tmp_path / "run" / "checkpoint-4" / "model.safetensors").is_file()
    resumed = bertune.Trainer(args=args, train_dataset=df)
    assert resumed.train(resume_from_checkpoint=True).global_step == 6


STOP_ON_RANK_ONE = """
import json, os, sys
import bertune
rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
class StopOnRankOne(bertune.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if rank == 1 and state.global_step == 3:
            control.should_training_stop = True
out = bertune.Trainer(args=bertune.TrainingArguments(**json.loads(sys.argv[1])), callbacks=[StopOnRankOne()]).train()
print("rank", rank, "stopped after step", out.global_step)
"""


def test_a_callback_stopping_one_rank_stops_every_rank(tiny, tmp_path):
    # Under mpirun every rank runs its own callbacks; one asking to stop must stop all of them
    # at the same step boundary (the others would wait for it in the next step's sums).
    mpirun = shutil.which("mpirun")
    if mpirun is None or not bertune._native.mpi_built():
        pytest.skip("needs mpirun and a build with MPI")
    train = tmp_path / "train.tsv"
    with open(NSMC / "ratings_train.txt", encoding="utf-8") as f:
        train.write_text("".join(next(f) for _ in range(101)), encoding="utf-8")
    script = tmp_path / "stop.py"
    script.write_text(STOP_ON_RANK_ONE, encoding="utf-8")
    args = base_args(tiny, tmp_path / "run", max_steps=8, logging_steps=1, threads=1, train_file=str(train))
    run = subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "2", "-x", "PYTHONPATH",
                          sys.executable, str(script), json.dumps(args)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(line for line in run.stdout.splitlines() if line.startswith("rank")) == [
        "rank 0 stopped after step 3", "rank 1 stopped after step 3"]
    assert [r["step"] for r in map(json.loads, open(tmp_path / "run" / "log.jsonl")) if "loss" in r] == [1, 2, 3]
