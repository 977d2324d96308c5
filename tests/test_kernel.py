"""The Kaggle kernel notebook, executed end to end on CPU with the tiny-cpu preset (nbclient, parameters injected
after the cell tagged `parameters`, as papermill does), against fake Kaggle input roots in Kaggle's layouts:

- its own Python environment (a venv that sees this one's packages but not sad_kaggle), so the notebook really
  installs the wheel it finds under the input root, offline (`--no-index`);
- the hub unreachable (HF_HUB_OFFLINE=1): teacher, student and text come only from the attached inputs, named in
  the config by hub-style ids;
- a second execution resumes from the first's output attached as a notebook output, at the right step.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT
from sad_kaggle.inputs import fake_kaggle_input

KERNEL = ROOT / "kaggle_kernel" / "sad_kaggle_kernel.ipynb"
SMALL = {"dataset_subset_size": 200, "eval_subset_size": 16, "eval_steps": 8, "save_steps": 8, "logging_steps": 8}
# the embedded pair and corpus named as a user names hub models and datasets; the fake inputs hold them
ATTACHED = {"teacher_model": "acme/tiny-teacher", "student_model": "acme/tiny-student", "dataset": "kjv-corpus",
            "dataset_config": None, "eval_dataset": "kjv-corpus", "eval_dataset_config": None, "eval_split": "eval"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, timeout=300)
    return next(out.glob("sad_kaggle-*.whl"))


@pytest.fixture(scope="module")
def kaggle_python(tmp_path_factory) -> dict:
    """A Jupyter kernel in a fresh venv standing in for the Kaggle image: every dependency importable (this
    environment's site-packages on its path), sad_kaggle not (the editable install's hook is not processed)."""
    d = tmp_path_factory.mktemp("kaggle-image")
    venv = d / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "kaggle_image.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run([str(py), "-c", "import sad_kaggle"], capture_output=True, text=True, cwd=d)
    assert probe.returncode != 0, "sad_kaggle must not be importable before the notebook installs it"
    spec = d / "jupyter" / "kernels" / "kaggle-image"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                                  "display_name": "kaggle image", "language": "python"}))
    return {"JUPYTER_PATH": str(d / "jupyter"), "kernel": "kaggle-image", "venv": venv}


def run_kernel(tmp: Path, kernel_env: dict | None = None, extra_env: dict | None = None, interrupt_at_step=None,
               **params) -> nbformat.NotebookNode:
    """Execute the kernel notebook with `params` injected. `interrupt_at_step`: once metrics.jsonl under OUTPUT_DIR has
    that train step, send SIGINT to the kernel's process group, as Jupyter's Interrupt button does."""
    nb = nbformat.read(KERNEL, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]}))
    env_before = dict(os.environ)
    os.environ.update(HF_HUB_OFFLINE="1", SAD_KAGGLE_CACHE=str(tmp / "cache"), **(extra_env or {}))
    if kernel_env: os.environ["JUPYTER_PATH"] = kernel_env["JUPYTER_PATH"]
    os.environ.pop("SAD_SESSION_START", None)
    client = NotebookClient(nb, timeout=900, kernel_name=kernel_env["kernel"] if kernel_env else "python3",
                            resources={"metadata": {"path": str(tmp)}})
    if interrupt_at_step is not None:
        metrics = Path(params["OUTPUT_DIR"]) / "metrics.jsonl"
        def interrupt():
            deadline = time.time() + 600
            while time.time() < deadline:
                if metrics.is_file() and any(f'"step": {interrupt_at_step}, "kind": "train"' in l
                                             for l in metrics.read_text().splitlines()):
                    pgid = client.km.provisioner.pgid
                    assert pgid and pgid != os.getpgid(0), "the kernel must have its own process group"
                    os.killpg(pgid, signal.SIGINT)        # what jupyter_client's interrupt_kernel does
                    return
                time.sleep(0.05)
        threading.Thread(target=interrupt, daemon=True).start()
    try:
        client.execute()
    finally:
        os.environ.clear(); os.environ.update(env_before)
    return nb


def outputs(nb, kind="text"):
    for c in nb.cells:
        for o in c.get("outputs", []):
            if kind == "text" and o.get("output_type") == "stream": yield o["text"]
            if kind == "dashboard" and 'class="sad-headline"' in "".join(o.get("data", {}).get("text/html", "")):
                yield "".join(o["data"]["text/html"])          # the headline cards and the dashboard image


@pytest.mark.parametrize("layout", ["mixed", "flat"])
def test_kernel_installs_trains_and_resumes_from_kaggle_inputs_with_the_hub_unreachable(tmp_path, layout, wheel,
                                                                                      kaggle_python):
    # mixed: the wheel in datasets/<owner>/<slug>/, the models in models/<owner>/<model>/transformers/<variation>/<v>/,
    # the text flat, the previous run in notebooks/<owner>/<slug>/; flat: everything in /kaggle/input/<slug>/ (old kernels)
    root = fake_kaggle_input(tmp_path / "input", layout, wheel=wheel)
    first = tmp_path / "working" / "sad_output"
    common = dict(PRESET="tiny-cpu", PACKAGE="auto", INPUT_ROOT=str(root), OVERRIDES={**ATTACHED, **SMALL, "max_steps": 16})
    # session 1: a budget so short that the run stops after its first optimizer step, with a checkpoint
    nb = run_kernel(tmp_path, kaggle_python, OUTPUT_DIR=str(first), BUDGET_HOURS=1e-4, **common)
    text = "".join(outputs(nb))
    where = "datasets/someone/sad-kaggle-wheel" if layout == "mixed" else "sad-kaggle-wheel"
    assert f"installing {root / where / wheel.name}" in text
    assert f"from {kaggle_python['venv']}" in text                        # the notebook's install, not this checkout
    model_dir = root / ("models/someone/tiny-teacher/transformers/default/1" if layout == "mixed" else "tiny-teacher")
    assert f"teacher_model: acme/tiny-teacher → {model_dir} (attached input)" in text
    assert f"dataset: kjv-corpus → {root / 'kjv-corpus'} (attached input)" in text
    assert "teacher_model = 'acme/tiny-teacher'  (OVERRIDES)" in text and "(preset tiny-cpu)" in text
    assert "plan: each session stops by 0.0001 h = 0% of Kaggle's ~30 GPU hours a week" in text
    assert "stopped before the end" in text and (first / "checkpoints").is_dir()

    # session 2: the first output attached as "Add Input -> Your Work" (notebooks/<owner>/<slug>/ today, flat before)
    attached = root / ("notebooks/someone" if layout == "mixed" else "") / "sad-kaggle-distill" / "sad_output"
    shutil.copytree(first, attached)
    second = tmp_path / "working2" / "sad_output"
    nb = run_kernel(tmp_path, kaggle_python, OUTPUT_DIR=str(second), INTERACTIVE=(layout == "mixed"), **common)
    text = "".join(outputs(nb))
    assert f"run: {attached} (checkpoints at optimizer steps 1)" in text
    assert f"resuming from {attached / 'checkpoints' / 'step-0000001'}: optimizer step 1 of the run in {attached}" in text
    steps = [json.loads(l)["step"] for l in (second / "metrics.jsonl").read_text().splitlines() if '"train"' in l]
    assert steps == list(range(1, 17))                  # step 1 from session 1, 2-16 trained here: none lost or repeated
    assert "sample:" in text and "of Kaggle's 20 GB output limit" in text
    reloaded = float(text.split("saved student reloaded from")[1].split("bits per byte ")[1].split()[0])
    final = [json.loads(l) for l in (second / "metrics.jsonl").read_text().splitlines() if '"eval"' in l][-1]
    best = min(final["eval_bits_per_byte"], final.get("eval_ema_bits_per_byte", float("inf")))  # student/ = the better
    assert abs(reloaded - best) < 1e-3                              # the saved student is the one evaluated
    shown = list(outputs(nb, "dashboard"))
    assert shown and all('<img class="sad-dashboard"' in h and "data:image/png;base64," in h for h in shown), \
        "the dashboard was not displayed"
    card = (second / "student" / "README.md").read_text()                 # the measured numbers of the saved weights
    assert "acme/tiny-teacher" in card and f"| student (this model) | {best:.4f} |" in card
    assert f"| teacher | {final['eval_teacher_bits_per_byte']:.4f} |" in card
    if layout == "mixed":                                            # the editor path: no edits, so no paste warning
        assert "Your edits in the form are not in the parameters cell" not in text


def test_kernel_with_a_model_missing_says_what_to_attach_and_loads_nothing(tmp_path):
    root = fake_kaggle_input(tmp_path / "input", "mixed")
    out = tmp_path / "working" / "sad_output"
    with pytest.raises(Exception) as e:
        run_kernel(tmp_path, PRESET="tiny-cpu", PACKAGE="", OUTPUT_DIR=str(out), INPUT_ROOT=str(root),
                   OVERRIDES={**ATTACHED, **SMALL, "teacher_model": "huihui-ai/Huihui-MoE-1B-A0.6B", "max_steps": 16})
    msg = str(e.value)
    assert "inputs: teacher_model huihui-ai/Huihui-MoE-1B-A0.6B: not under" in msg and "'huihui-moe-1b-a0-6b'" in msg
    assert "turn internet on" in msg
    assert not (out / "config.json").exists()                        # stopped before any model or data was loaded


def test_kernel_notebook_on_two_processes_survives_interrupt_and_budget_stop_and_resumes(tmp_path):
    # the branch Kaggle's T4 x2 takes, on CPU: torchrun, 2 processes, sad-train, the notebook following metrics.jsonl;
    # three executions of the notebook on the same output directory, as a user re-runs it
    from nbclient.exceptions import CellExecutionError
    out = tmp_path / "working" / "sad_output"
    params = dict(PRESET="tiny-cpu", PACKAGE="", OUTPUT_DIR=str(out), INPUT_ROOT=str(tmp_path / "input"), PROCESSES=2,
                  OVERRIDES={**SMALL, "max_steps": 24, "eval_steps": 8, "save_steps": 12, "batch_size": 4,
                             "gradient_accumulation_steps": 1})
    # 1. the Interrupt button mid-run: the workers save a checkpoint and the cell says where (no traceback, Run All stops)
    with pytest.raises(CellExecutionError) as e:
        run_kernel(tmp_path, interrupt_at_step=3, **params)
    msg = str(e.value)
    assert "interrupted: stopped at optimizer step" in msg and "(signal" in msg and "Traceback" not in msg
    stopped = json.loads((out / "stopped.json").read_text())
    assert Path(stopped["checkpoint"]).is_dir() and stopped["step"] >= 3

    # 2. run again: resumes there; a stop at step 16 (as the time budget would) ends the cell cleanly, no torchrun traceback
    nb = run_kernel(tmp_path, extra_env={"SAD_TEST_FAULTS": json.dumps({"stop_at_steps": [16]})}, **params)
    text = "".join(outputs(nb))
    assert f"resuming from {stopped['checkpoint']}" in text
    assert "stopped before the end" in text and "step-0000016" in text and "ChildFailedError" not in text
    log = (out / "train.log").read_text()
    assert "2 training process(es)" in text and "÷ 2 process(es)" in text
    status = [l for l in log.splitlines() if l.startswith("step ") and "tok/s" in l]
    assert status, "no status line from the subprocess"

    # 3. and again: resumes at 16 and finishes; every step once, the dashboard shown
    nb = run_kernel(tmp_path, **params)
    text = "".join(outputs(nb))
    assert "resuming from" in text and "step-0000016" in text and "ranks in sync" in text
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in l]
    assert steps == list(range(1, 25))
    assert not (out / "stopped.json").exists()
    assert list(outputs(nb, "dashboard")), "the dashboard was not displayed while following the subprocess"
