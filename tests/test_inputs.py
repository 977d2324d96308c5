"""Kaggle as it is today, through `sad-train` and the saved student: models and text attached as Kaggle inputs in
today's layouts with the hub unreachable, a clear refusal when a model is missing, a loud warning when a previous
run is attached without usable checkpoints, and a saved student that the transformers 4.x of a Kaggle image loads."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import one_line, run_cli

from sad_kaggle.cli import EXIT_BAD_INPUT
from sad_kaggle.inputs import fake_kaggle_input

SMALL = ["--preset", "tiny-cpu", "--set", "dataset_subset_size=200", "--set", "eval_subset_size=16", "--set", "eval_steps=2",
         "--set", "save_steps=1", "--set", "logging_steps=1", "--set", "warmup_ratio=0.25"]
ATTACHED = ["--set", "teacher_model=acme/tiny-teacher", "--set", "student_model=acme/tiny-student",
            "--set", "dataset=kjv-corpus", "--set", "eval_dataset=kjv-corpus", "--set", "eval_split=eval"]


def test_sad_train_loads_models_and_text_attached_as_kaggle_inputs_and_warns_on_a_run_without_checkpoints(tmp_path):
    root = fake_kaggle_input(tmp_path / "input", "mixed")
    out = tmp_path / "run"
    r = run_cli("sad-train", *SMALL, *ATTACHED, "--max-steps", "4", "--input-dir", root, "--output-dir", out, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    model = root / "models/someone/tiny-teacher/transformers/default/1"
    assert f"teacher_model: acme/tiny-teacher → {model} (attached input)" in r.stdout
    assert f"student_model: acme/tiny-student → {root / 'models/someone/tiny-student/transformers/default/1'} (attached input)" in r.stdout
    assert f"dataset: kjv-corpus → {root / 'kjv-corpus'} (attached input)" in r.stdout
    saved = json.loads((out / "config.json").read_text())
    assert saved["teacher_model"] == "acme/tiny-teacher"             # the run keeps the ids; the next session resolves them

    # the previous output attached as a notebook's output, but its checkpoints gone: a warning before step 0
    prev = root / "notebooks/someone/distill/sad_output"
    shutil.copytree(out, prev); shutil.rmtree(prev / "checkpoints")
    r = run_cli("sad-train", *SMALL, *ATTACHED, "--max-steps", "4", "--resume", "auto", "--input-dir", root,
                "--output-dir", tmp_path / "run2", timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    warning = next(l for l in r.stdout.splitlines() if l.startswith("WARNING"))
    assert "no usable checkpoint" in warning and str(prev / "checkpoints") in warning
    assert r.stdout.index("WARNING") < r.stdout.index("step 4/4")        # said before training (its status line) ends


def test_sad_train_with_a_model_not_attached_says_what_to_attach_and_loads_nothing(tmp_path):
    root = fake_kaggle_input(tmp_path / "input", "models")
    out = tmp_path / "run"
    r = run_cli("sad-train", *SMALL, *ATTACHED, "--set", "teacher_model=huihui-ai/Huihui-MoE-1B-A0.6B",
                "--input-dir", root, "--output-dir", out)
    assert r.returncode == EXIT_BAD_INPUT, r.stdout[-2000:] + r.stderr[-2000:]
    line = one_line(r.stderr)
    assert line.startswith("sad-train: error: teacher_model huihui-ai/Huihui-MoE-1B-A0.6B: not under " + str(root))
    assert "(HF_HUB_OFFLINE=1)" in line and "a Kaggle Model (Add Input → Models)" in line and "'huihui-moe-1b-a0-6b'" in line
    assert not (out / "config.json").exists()                       # refused before any model or data was loaded


@pytest.fixture(scope="module")
def transformers_4(tmp_path_factory) -> Path:
    "transformers 4.57 (with the hub client and tokenizers it needs) in a directory put first on PYTHONPATH."
    d = tmp_path_factory.mktemp("transformers4")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                    "--target", str(d), "transformers==4.57.*", "huggingface_hub==0.36.*", "tokenizers==0.22.*"],
                   check=True, timeout=600)
    return d


LOAD_4X = """
import json, sys, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
out = {"version": transformers.__version__}
for name in sys.argv[1:]:
    m = AutoModelForCausalLM.from_pretrained(name, torch_dtype="auto").eval()
    tok = AutoTokenizer.from_pretrained(name)
    ids = tok("In the beginning God created the heaven", return_tensors="pt").input_ids
    with torch.no_grad(): logits = m(ids).logits.float()
    out[name] = {"dtype": str(next(m.parameters()).dtype), "ids": ids[0].tolist(), "logits": logits[0, -1, :50].tolist(),
                 "tokenizer": type(tok).__name__}
print(json.dumps(out))
"""


def test_saved_student_loads_with_the_transformers_4_of_a_kaggle_image(tmp_path, transformers_4):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from sad_kaggle.align import load_tokenizer
    from sad_kaggle.config import ASSETS
    from sad_kaggle.student import save_student
    # a student whose rotary base is not 4.x's default (SmolLM2's 100,000): a silent difference if it were lost
    cfg = AutoConfig.from_pretrained(ASSETS / "tiny" / "student")
    if getattr(cfg, "rope_parameters", None) is not None: cfg.rope_parameters["rope_theta"] = 100000.0
    else: cfg.rope_theta = 100000.0
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    tok = load_tokenizer("sad_kaggle:tiny-student")
    full = save_student(model, tok, tmp_path / "fp32", "float32")
    half = save_student(model, tok, tmp_path / "fp16", "float16")
    assert 0.49 < (half / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size < 0.51
    ids = tok("In the beginning God created the heaven", return_tensors="pt").input_ids
    with torch.no_grad(): ref = model(ids).logits[0, -1, :50]

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(transformers_4)}
    r = subprocess.run([sys.executable, "-c", LOAD_4X, str(full), str(half)], capture_output=True, text=True, env=env,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["version"].startswith("4.57")
    for path, dtype, tol in ((full, "torch.float32", 1e-4), (half, "torch.float16", 5e-2)):
        g = got[str(path)]
        assert g["dtype"] == dtype and g["ids"] == ids[0].tolist() and g["tokenizer"] == "PreTrainedTokenizerFast"
        assert torch.allclose(torch.tensor(g["logits"]), ref, atol=tol), (path, (torch.tensor(g["logits"]) - ref).abs().max())
