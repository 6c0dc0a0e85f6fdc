"""examples/nsmc.ipynb runs from top to bottom (nbclient) on a few hundred NSMC reviews."""
import os
import sys

import nbclient  # Debian's python3-nbclient and python3-ipykernel (scripts/setup)
import nbformat

from conftest import REPO, SHARED


def test_example_notebook_runs(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("NSMC_SAMPLES", "300")
    monkeypatch.setenv("NSMC_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("BERTUNE_SHARED", str(SHARED))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    nb = nbformat.read(REPO / "examples" / "nsmc.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "examples")}}).execute()
    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    text = "".join(o.get("data", {}).get("text/plain", "") for cell in outputs.values() for o in cell)
    assert "eval_balanced_accuracy" in text and "TrainOutput(global_step=" in text
    assert "'label': 'LABEL_" in text or "'label': '" in text
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()
