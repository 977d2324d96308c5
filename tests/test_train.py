"""Whole-process tests of `sad-train`: kill and resume, signals, the time budget, corrupt checkpoints,
bad input, DDP, and the main job.

Each guards against a failure in ../shared/reference/ (see its README): runs that could not survive
Kaggle's session end, an evaluation that crashed or froze, NaN clamped to zero, a schedule built over
batches (LR 0 after 6 % of training).
"""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import one_line, run_cli

from sad_kaggle.cli import EXIT_BAD_INPUT

# a short run of the embedded pair: 12 optimizer steps, a checkpoint after every one
SMALL = ["--preset", "tiny-cpu", "--max-steps", "12", "--set", "dataset_subset_size=200", "--set", "eval_subset_size=16",
         "--set", "eval_steps=6", "--set", "save_steps=1", "--set", "logging_steps=4", "--set", "warmup_ratio=0.25",
         "--set", "save_total_limit=3"]
EXIT_STOPPED = 3


def train_records(out: Path) -> dict:
    "step -> the train record (a repeated step would raise)."
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]
    steps = [r["step"] for r in recs if r["kind"] == "train"]
    assert len(steps) == len(set(steps)), f"a step was logged twice: {steps}"
    return {r["step"]: r for r in recs if r["kind"] == "train"}


def start(*args) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(["sad-train", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)


def wait_for_step(out: Path, step: int, proc: subprocess.Popen, timeout: float = 240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: raise AssertionError(f"run ended before step {step}: {proc.stdout.read()[-2000:]}")
        p = out / "metrics.jsonl"
        if p.is_file():
            for l in p.read_text().splitlines():
                try:
                    if json.loads(l).get("step", 0) >= step: return
                except ValueError:
                    pass
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout} s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ref")
    r = run_cli("sad-train", *SMALL, "--output-dir", out, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return train_records(out)


def assert_same_trajectory(got: dict, ref: dict):
    assert sorted(got) == sorted(ref) == list(range(1, 13)), f"steps lost or repeated: {sorted(got)}"
    for s in ref:
        assert got[s]["lr"] == ref[s]["lr"], (s, got[s]["lr"], ref[s]["lr"])
        assert abs(got[s]["loss"] - ref[s]["loss"]) < 1e-5, (s, got[s]["loss"], ref[s]["loss"])


def test_reference_run_learns_and_schedules_over_optimizer_steps(reference):
    # 000/002: the LR must be > 0 after warmup (the predecessor's reached 0 at 6 % of training)
    lrs = [reference[s]["lr"] for s in sorted(reference)]
    assert all(lr > 0 for lr in lrs[3:]), lrs
    assert lrs[3] == max(lrs) and lrs[-1] < lrs[3]          # warmup of 3 steps, then the cosine decays


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_9_and_resume_reproduces_the_uninterrupted_run(reference, tmp_path, seed):
    # killed at a random optimizer step (maybe mid-checkpoint), resumed: the same losses and LRs, exactly
    kill_at = random.Random(seed).randint(2, 10)
    p = start(*SMALL, "--output-dir", tmp_path)
    wait_for_step(tmp_path, kill_at, p)
    p.send_signal(signal.SIGKILL); p.wait()
    r = run_cli("sad-train", *SMALL, "--output-dir", tmp_path, "--resume", "auto", timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "resumed from" in r.stdout, r.stdout[-2000:]
    assert_same_trajectory(train_records(tmp_path), reference)


def test_sigterm_leaves_a_checkpoint_and_resume_loses_nothing(reference, tmp_path):
    p = start(*SMALL, "--output-dir", tmp_path)
    wait_for_step(tmp_path, 4, p)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=240)
    assert p.returncode == EXIT_STOPPED, out[-3000:]
    assert "--resume auto" in out                               # tells the user how to continue
    stopped_at = max(train_records(tmp_path))
    assert (tmp_path / "checkpoints" / f"step-{stopped_at:07d}" / "trainer_state.json").is_file()
    r = run_cli("sad-train", *SMALL, "--output-dir", tmp_path, "--resume", "auto", timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert_same_trajectory(train_records(tmp_path), reference)


def test_time_budget_stops_with_a_checkpoint_and_resume_finishes(reference, tmp_path):
    # a budget of a few seconds from the session start: stop cleanly, checkpoint, say how to resume
    # a 36 s budget whose session started 26 s ago: 10 s left, minus the margin, ends it during training
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SAD_SESSION_START": str(time.time() - 26)}
    r = subprocess.run(["sad-train", *SMALL, "--output-dir", str(tmp_path), "--set", "time_budget_hours=0.01"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == EXIT_STOPPED, r.stdout[-3000:] + r.stderr[-3000:]
    assert "time budget" in r.stdout and "--resume auto" in r.stdout
    done = max(train_records(tmp_path))
    assert 0 < done < 12
    r = run_cli("sad-train", *SMALL, "--output-dir", tmp_path, "--resume", "auto", timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert_same_trajectory(train_records(tmp_path), reference)


def test_truncated_checkpoint_is_skipped_for_the_previous_one(reference, tmp_path):
    r = run_cli("sad-train", *SMALL, "--output-dir", tmp_path, "--max-steps", "12", timeout=600)
    assert r.returncode == 0
    newest = sorted((tmp_path / "checkpoints").glob("step-*"))[-1]
    weights = newest / "student.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    r = run_cli("sad-train", *SMALL, "--output-dir", tmp_path, "--resume", "auto", timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"checkpoint {newest}: unreadable" in r.stdout
    assert "resumed from" in r.stdout and newest.name not in r.stdout.split("resumed from")[1].splitlines()[0]


def _tree_hash(d: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(d.rglob("*")):
        if f.is_file(): h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("args,expect", [
    (["--set", "no_such_key=1"], "no_such_key"),
    (["--set", "learning_rate=-0.001"], "learning_rate"),
    (["--set", "dataset=/no/such/data/dir"], "/no/such/data/dir"),
    (["--output-dir", "/proc/sad-kaggle-cannot-write"], "cannot write"),
])
def test_bad_input_is_one_line_and_checkpoints_stay(tmp_path, args, expect):
    ckpt = tmp_path / "checkpoints" / "step-0000004"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}"); (ckpt / "model.safetensors").write_bytes(b"weights")
    before = _tree_hash(tmp_path)
    r = run_cli("sad-train", "--preset", "tiny-cpu", "--output-dir", tmp_path, *args, timeout=300)
    assert r.returncode == EXIT_BAD_INPUT, r.stdout[-2000:] + r.stderr[-2000:]
    assert expect in one_line(r.stderr)
    assert _tree_hash(tmp_path) == before


def test_two_process_ddp_on_cpu(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    sad_train = shutil.which("sad-train")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
                        sad_train, "--preset", "tiny-cpu", "--output-dir", str(tmp_path), "--max-steps", "4",
                        "--set", "dataset_subset_size=64", "--set", "eval_subset_size=8", "--set", "eval_steps=2",
                        "--set", "save_steps=2", "--set", "logging_steps=2"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ranks in sync" in r.stdout + r.stderr
    assert "÷ 2 process(es)" in r.stdout
    assert sorted(train_records(tmp_path)) == [1, 2, 3, 4]          # written once, by the main process


def test_main_job_on_the_embedded_default(tmp_path):
    # the README's first command: the whole tiny-cpu preset (150 optimizer steps, 2 CPU cores)
    r = run_cli("sad-train", "--preset", "tiny-cpu", "--output-dir", tmp_path, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "held-out bits per byte" in r.stdout and "teacher" in r.stdout
    recs = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in recs if x["kind"] == "train"]
    evals = [x for x in recs if x["kind"] == "eval"]
    warmup = 15
    assert all(x["lr"] > 0 for x in train[warmup:])                               # 000: LR never 0 after warmup
    first, last = train[:10], train[-10:]
    for c in ("lm", "kd"):                                                          # the training loss goes down
        assert sum(x["raw_" + c] for x in last) < 0.8 * sum(x["raw_" + c] for x in first), c
    bpb = [x["eval_bits_per_byte"] for x in evals]
    assert len(bpb) >= 3 and len(set(bpb)) == len(bpb) and bpb[-1] < bpb[0]         # eval metrics move, and improve
    assert all(0 < x["eval_perplexity"] < 1e4 for x in evals)                       # 002: from the LM loss only
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    summary = json.loads((tmp_path / "summary.json").read_text())               # the model card holds the measured numbers
    card = (tmp_path / "student" / "README.md").read_text()
    saved = summary["student_ema_bits_per_byte"] if summary["saved_weights"] == "ema" else summary["student_bits_per_byte"]
    assert f"| student (this model) | {saved:.4f} |" in card and f"| teacher | {summary['teacher_bits_per_byte']:.4f} |" in card
    assert "| optimizer steps | 150 " in card and (tmp_path / "student" / "generation_config.json").is_file()
    for name in ("lr", "heldout", "losses_raw", "weights", "losses_weighted", "time", "dashboard"):   # sad-train's PNGs
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    assert not (tmp_path / "plots" / "memory.png").exists()        # a CPU run: no memory panel


def run_with_faults(out: Path, faults: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SAD_TEST_FAULTS": json.dumps(faults)}
    return subprocess.run(["sad-train", *SMALL, "--output-dir", str(out)], capture_output=True, text=True, env=env,
                          timeout=600)


def test_nan_steps_are_skipped_counted_and_never_zeroed(tmp_path):
    # 001/002: a NaN lm_loss was "clamped to zero" and training went on; here the step is skipped and named
    r = run_with_faults(tmp_path, {"nan_steps": [2, 5]})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    recs = train_records(tmp_path)
    assert [s for s, x in recs.items() if x.get("skipped")] == [3, 6]
    assert all(recs[s]["nonfinite"] == ["kd"] for s in (3, 6))
    assert "optimizer step 3 skipped: non-finite kd" in r.stdout
    assert json.loads((tmp_path / "summary.json").read_text())["skipped_steps"] == 2
    import torch
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    assert all(torch.isfinite(p).all() for p in m.parameters())


def test_oom_halves_the_micro_batch_and_keeps_the_schedule(reference, tmp_path):
    # 002: 96-98 % GPU memory; an OOM must not end the run nor change the effective batch or the LR schedule
    r = run_with_faults(tmp_path, {"oom_steps": [4]})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    recs = train_records(tmp_path)
    assert all((recs[s]["batch_size"], recs[s]["accumulation"]) == (8, 2) for s in range(1, 5))
    assert all((recs[s]["batch_size"], recs[s]["accumulation"]) == (4, 4) for s in range(5, 13))
    assert [recs[s]["lr"] for s in range(1, 13)] == [reference[s]["lr"] for s in range(1, 13)]
    assert "effective batch unchanged" in r.stdout
