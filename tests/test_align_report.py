"""Whole-process tests of `sad-align-report`: the documented --json keys, and one line per bad input.

The root cause of the predecessor's failure (../shared/reference/README.md and its post-mortems): the
teacher's 151,936 logits were truncated to the student's 49,152 as if token id i meant the same in both
vocabularies. This command is the pre-flight check that shows how two tokenizers really correspond.
"""
import json
import os
import subprocess

import pytest
from conftest import one_line, run_cli

from sad_kaggle.cli import EXIT_BAD_INPUT

KEYS = {"teacher", "student", "teacher_vocab", "student_vocab", "exact_match", "chunks", "digits", "text",
        "self_check", "warnings"}


def run(*args, timeout=300):
    return run_cli("sad-align-report", *args, timeout=timeout)


def test_embedded_pair_json():
    r = run("--teacher", "sad_kaggle:tiny-teacher", "--student", "sad_kaggle:tiny-student", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert set(rep) == KEYS
    assert rep["self_check"] == {"passed": True, "error": None}
    assert rep["teacher_vocab"] == {"declared": 4096, "real": 4000, "special": 1}
    assert rep["digits"]["teacher_splits_singly"] and not rep["digits"]["student_splits_singly"]
    assert rep["digits"]["warning"] in rep["warnings"]
    assert 0.5 < rep["chunks"]["student_end_share"] <= 1.0


def test_text_file_and_plain_output(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("Numbers 3:16 and 2024 are digits.\n\nCafé, naïve, 中文, 😀.\n")
    r = run("--teacher", "sad_kaggle:tiny-teacher", "--student", "sad_kaggle:tiny-student", "--text", f)
    assert r.returncode == 0, r.stderr
    assert "self-check: passed" in r.stdout and "WARNING: the teacher splits digits singly" in r.stdout


@pytest.mark.parametrize("teacher,text,expect", [
    ("./no/such/tokenizer", None, "tokenizer ./no/such/tokenizer: directory does not exist"),
    ("nobody-here/no-such-tokenizer", None, "hub is offline"),
    ("sad_kaggle:tiny-teacher", "/no/such/text.txt", "text file /no/such/text.txt: does not exist"),
])
def test_bad_input_is_one_line(teacher, text, expect):
    args = ["--teacher", teacher, "--student", "sad_kaggle:tiny-student"] + (["--text", text] if text else [])
    r = run(*args)
    assert r.returncode == EXIT_BAD_INPUT
    assert expect in one_line(r.stderr)


def test_slow_tokenizer_is_refused_in_one_line(tmp_path):
    from transformers import ByT5Tokenizer   # python-only: no byte offsets
    ByT5Tokenizer().save_pretrained(tmp_path / "byt5")
    r = run("--teacher", tmp_path / "byt5", "--student", "sad_kaggle:tiny-student")
    assert r.returncode == EXIT_BAD_INPUT
    assert "slow tokenizer" in one_line(r.stderr)
