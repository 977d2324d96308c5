"""Whole-process tests of `sad-diagnose`: real processes, real exit codes, real files.

Regression tests for the predecessor's failures named in ../shared/reference/: the scheduler sized in
one unit and stepped in another (000, 002 #1), the 62-optimizer-step warmup (002 #9).
"""
import json
import os
import subprocess
import sys

import pytest
from conftest import one_line, run_cli

from sad_kaggle.config import DistillConfig
from sad_kaggle.cli import EXIT_BAD_INPUT


def run(*args, timeout=120):
    return run_cli("sad-diagnose", *args, timeout=timeout)


def test_original_config_names_the_schedule_and_warmup_in_optimizer_steps(legacy_dir):
    # 000/002: the run that never learned. LR at 0 from 6 % of training; warmup 62 optimizer steps.
    r = run(legacy_dir / "improved_config.json", "--legacy")
    assert r.returncode >= 1, r.stdout
    assert "optimizer step 294 of 4,689 (6.3% of training)" in r.stdout
    assert "warmup 62 optimizer steps (1,000 batches ÷ 16) = 1.3% of 4,689" in r.stdout


def test_fix_of_the_original_diagnoses_clean(legacy_dir, tmp_path):
    out = tmp_path / "fixed.json"
    r = run(legacy_dir / "improved_config.json", "--legacy", "--fix", "--output", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warmup_ratio: null -> 0.05" in r.stdout
    cfg = DistillConfig.from_json(out)
    assert cfg.warmup_ratio == 0.05 and cfg.learning_rate == 3e-5 and cfg.gradient_accumulation_steps == 16
    again = run(out, "--json")
    assert again.returncode == 0
    assert not [f for f in json.loads(again.stdout) if f["severity"] == "critical"]


def test_emergency_config_has_no_critical_after_fix(legacy_dir, tmp_path):
    before = run(legacy_dir / "emergency_fix_config.json", "--legacy", "--dataset-size", 50000)
    assert before.returncode == 1 and "optimizer step 313 of 4,689" in before.stdout
    out = tmp_path / "fixed.json"
    r = run(legacy_dir / "emergency_fix_config.json", "--legacy", "--dataset-size", 50000, "--fix", "--output", out)
    assert r.returncode == 0, r.stdout
    assert run(out, "--dataset-size", 50000).returncode == 0


def test_unknown_key_is_one_line_naming_it(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"learning_rat": 1e-4}))
    r = run(p)
    assert r.returncode == EXIT_BAD_INPUT
    line = one_line(r.stderr)
    assert "'learning_rat'" in line and "did you mean 'learning_rate'" in line


@pytest.mark.parametrize("content, words", [
    ('{"batch_size": 0}', ["batch_size", "[1, 4096]", "got 0"]),
    ('{"temperature": "hot"}', ["temperature", "expected a number"]),
    ('{"learning_rate": 1e-4,}', ["invalid JSON at line 1"]),
    ('[1, 2]', ["expected a JSON object"]),
])
def test_bad_values_are_one_line(tmp_path, content, words):
    p = tmp_path / "c.json"
    p.write_text(content)
    r = run(p)
    assert r.returncode == EXIT_BAD_INPUT
    line = one_line(r.stderr)
    assert all(w in line for w in words), line


def test_missing_file_and_bad_set_are_one_line(tmp_path):
    r = run(tmp_path / "nope.json")
    assert r.returncode == EXIT_BAD_INPUT and "nope.json: config file not found" in one_line(r.stderr)
    r = run("--preset", "tiny-cpu", "--set", "lerning_rate=1")
    assert r.returncode == EXIT_BAD_INPUT and "did you mean 'learning_rate'" in one_line(r.stderr)


def test_failed_fix_leaves_an_existing_output_untouched(tmp_path):
    out = tmp_path / "keep.json"
    out.write_text("precious")
    bad = tmp_path / "bad.json"
    bad.write_text('{"seed": -5}')
    r = run(bad, "--fix", "--output", out)
    assert r.returncode == EXIT_BAD_INPUT
    assert out.read_text() == "precious"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.json", "keep.json"]   # no temporary left


def test_preset_json_and_critical_count_is_the_exit_code(tmp_path):
    r = run("--preset", "tiny-cpu", "--json")
    assert r.returncode == 0
    findings = json.loads(r.stdout)
    assert all(set(f) == {"severity", "check", "field", "message", "suggested"} for f in findings)
    # two criticals: a zero learning rate and bf16 on a T4
    r = run("--preset", "kaggle-t4x2", "--set", "learning_rate=0", "--set", "mixed_precision=\"bf16\"", "--json")
    crit = [f["check"] for f in json.loads(r.stdout) if f["severity"] == "critical"]
    assert sorted(crit) == ["learning_rate", "precision"] and r.returncode == 2


def test_unresolvable_model_offline_is_one_finding_not_a_traceback():
    r = run("--preset", "tiny-cpu", "--set", "teacher_model=nobody/no-such-model", timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr
    assert "nobody/no-such-model: no config.json found" in r.stdout


def test_help_runs():
    r = run("--help")
    assert r.returncode == 0 and "critical" in r.stdout


def test_t4_plan_gives_memory_for_both_teacher_dtypes_and_a_planning_throughput():
    r = run("--preset", "kaggle-t4x2", "--gpu", "t4", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    by = {f["check"]: f for f in json.loads(r.stdout)}
    assert "in fp16 8.3 GiB, in fp32 11.2 GiB, of 12.8 GiB allowed" in by["teacher_dtype"]["message"]
    speed = by["speed"]["message"]
    assert "student tokens/s on 2 x Tesla T4 at 30% of its 65 TFLOP/s fp16 peak" in speed and "if the teacher must run in fp32" in speed


def test_teacher_precision_mode_runs_the_check_on_the_configs_text():
    r = run("--preset", "tiny-cpu", "--teacher-precision", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    f = next(f for f in json.loads(r.stdout) if f["check"] == "teacher_precision")
    assert f["severity"] == "info" and f["message"].startswith("teacher in fp16: safe on ") and "KL to fp32" in f["message"]
