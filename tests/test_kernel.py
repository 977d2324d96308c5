"""The Kaggle kernel notebook, executed end to end on CPU with the tiny-cpu preset (nbclient, parameters injected
after the cell tagged `parameters`, as papermill does), then again as a new "session" that resumes from the first
session's output attached as an input."""
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

KERNEL = ROOT / "kaggle_kernel" / "sad_kaggle_kernel.ipynb"
SMALL = {"dataset_subset_size": 200, "eval_subset_size": 16, "eval_steps": 8, "save_steps": 8, "logging_steps": 8}


def run_kernel(tmp: Path, **params) -> nbformat.NotebookNode:
    nb = nbformat.read(KERNEL, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]}))
    env_before = dict(os.environ)
    os.environ.update(HF_HUB_OFFLINE="1", SAD_KAGGLE_CACHE=str(tmp / "cache"))
    os.environ.pop("SAD_SESSION_START", None)
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp)}}).execute()
    finally:
        os.environ.clear(); os.environ.update(env_before)
    return nb


def outputs(nb, kind="text"):
    for c in nb.cells:
        for o in c.get("outputs", []):
            if kind == "text" and o.get("output_type") == "stream": yield o["text"]
            if kind == "png" and "image/png" in o.get("data", {}): yield o["data"]["image/png"]


def test_kernel_notebook_runs_end_to_end_on_cpu_and_resumes_from_an_attached_output(tmp_path):
    # session 1: a time budget so short that the run stops after its first optimizer step, with a checkpoint
    first = tmp_path / "working" / "sad_output"
    nb = run_kernel(tmp_path, PRESET="tiny-cpu", PACKAGE="", OUTPUT_DIR=str(first), INPUT_ROOT=str(tmp_path / "input"),
                    OVERRIDES={**SMALL, "max_steps": 16}, BUDGET_HOURS=1e-4)
    text = "".join(outputs(nb))
    assert "no GPU visible: training runs on the CPU in fp32" in text
    assert "previous runs attached: none" in text
    assert "stopped before the end" in text and (first / "checkpoints").is_dir()
    assert (first / "plots" / "dashboard.png").is_file()

    # session 2: the first one's output attached under the input root (Add Input -> Your Work), a new output dir,
    # the config editor path (INTERACTIVE), the normal budget: it resumes and finishes
    attached = tmp_path / "input" / "sad-kaggle-distill"
    attached.parent.mkdir()
    os.symlink(first, attached)
    second = tmp_path / "working2" / "sad_output"
    nb = run_kernel(tmp_path, PRESET="tiny-cpu", PACKAGE="", OUTPUT_DIR=str(second), INPUT_ROOT=str(tmp_path / "input"),
                    OVERRIDES={**SMALL, "max_steps": 16}, INTERACTIVE=True)
    text = "".join(outputs(nb))
    assert f"previous runs attached: {attached}" in text
    steps = [json.loads(l)["step"] for l in (second / "metrics.jsonl").read_text().splitlines() if '"train"' in l]
    assert steps == list(range(1, 17))                  # step 1 from session 1, 2-16 trained here: none lost or repeated
    assert "held-out bits per byte" in text and "sample:" in text and "of Kaggle's 20 GB output limit" in text
    summary = json.loads((second / "summary.json").read_text())
    reloaded = float(text.split("saved student reloaded from")[1].split("bits per byte ")[1].split()[0])
    final = [json.loads(l) for l in (second / "metrics.jsonl").read_text().splitlines() if '"eval"' in l][-1]
    best = min(final["eval_bits_per_byte"], final.get("eval_ema_bits_per_byte", float("inf")))  # student/ = the better
    assert abs(reloaded - best) < 1e-3                              # the saved student is the one evaluated
    assert list(outputs(nb, "png")), "the dashboard was not displayed"
    for name in ("lr", "losses_raw", "losses_weighted", "train_eval", "memory", "time", "dashboard"):
        assert (second / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    assert summary
    assert (second / "student" / "config.json").is_file()


def test_kernel_notebook_trains_in_a_torchrun_subprocess_with_two_processes(tmp_path):
    # the branch Kaggle's T4 x2 takes, on CPU: torchrun, 2 processes, sad-train, the notebook following metrics.jsonl
    out = tmp_path / "working" / "sad_output"
    nb = run_kernel(tmp_path, PRESET="tiny-cpu", PACKAGE="", OUTPUT_DIR=str(out), INPUT_ROOT=str(tmp_path / "input"),
                    OVERRIDES={**SMALL, "max_steps": 8, "eval_steps": 4}, PROCESSES=2)
    text = "".join(outputs(nb))
    assert "2 training process(es)" in text
    assert "÷ 2 process(es)" in text and "ranks in sync" in text        # echoed from the subprocess
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in l]
    assert steps == list(range(1, 9))
    assert list(outputs(nb, "png")), "the dashboard was not displayed while following the subprocess"
    assert (out / "plots" / "dashboard.png").is_file() and "saved student reloaded" in text
