"""Bad input, as a hostile but realistic user gives it, to every command: each case runs as a real process and must
exit 64 with one line on stderr naming the field, file or flag (no traceback), and leave the output directory exactly
as it was. Add a case for every bad input found; the README's reliability section gives the count."""
import gzip
import hashlib
import json
import os
import pickle
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import one_line

from sad_kaggle.cli import EXIT_BAD_INPUT

SMALL = ["--preset", "tiny-cpu", "--max-steps", "4", "--set", "dataset_subset_size=64", "--set", "eval_subset_size=8",
         "--set", "eval_steps=2", "--set", "save_steps=2", "--set", "logging_steps=2", "--set", "save_total_limit=3"]


def tree_hash(d: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(Path(d).rglob("*")):
        h.update(str(f.relative_to(d)).encode())
        if f.is_file(): h.update(f.read_bytes())
    return h.hexdigest()


def run(prog, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([prog, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    "A finished 4-step run of the embedded pair with checkpoints at steps 2 and 4 (copied, never changed)."
    out = tmp_path_factory.mktemp("finished") / "run"
    r = run("sad-train", *SMALL, "--output-dir", out, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("texts")
    rnd = random.Random(0)
    (d / "random.txt").write_bytes(bytes(rnd.randrange(256) for _ in range(200_000)))
    (d / "latin1.txt").write_bytes(("Le café où naïve Zoé a lu son résumé près de la forêt, à Noël.\n\n" * 2000)
                                   .encode("latin-1"))
    (d / "empty.txt").write_bytes(b"")
    good = gzip.compress(("In the beginning was the word.\n\n" * 5000).encode())
    (d / "truncated.txt.gz").write_bytes(good[: len(good) // 2])
    (d / "corrupt.txt.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(rnd.randrange(256) for _ in range(5000)))
    (d / "not-a-model").mkdir(); (d / "not-a-model" / "notes.txt").write_text("hello")
    (d / "a-file").write_text("not a directory")
    return {p.name: p for p in d.iterdir()}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _truncate_all(run_dir: Path) -> Path:
    for f in run_dir.glob("checkpoints/step-*/student.safetensors"): f.write_bytes(f.read_bytes()[:100])
    return run_dir


def _crafted(run_dir: Path) -> Path:
    class Payload:
        def __reduce__(self): return (os.system, (f"touch {run_dir.parent / 'code-ran'}",))
    for c in run_dir.glob("checkpoints/step-*"): (c / "optimizer.pt").write_bytes(pickle.dumps({"state": Payload()}))
    return run_dir


# (id, how to build the output directory from (tmp_path, finished, texts) or None, command and args, word on stderr)
CASES = [
    ("max-steps-0", None, lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--max-steps", "0"], "--max-steps"),
    ("output-dir-empty", None, lambda t, f, x: ["sad-train", *SMALL, "--output-dir", ""], "--output-dir"),
    ("fresh-run-on-another-run", lambda t, f, x: _copy(f, t / "o"),
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o"], "holds the checkpoints of run"),
    ("overwrite-and-resume", lambda t, f, x: _copy(f, t / "o"),
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--overwrite", "--resume", "auto"], "--overwrite"),
    ("resume-all-unreadable", lambda t, f, x: _truncate_all(_copy(f, t / "o")),
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--resume", "auto"], "none of the 2 checkpoint(s)"),
    ("resume-path-missing", None,
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--resume", t / "nowhere"], "no such directory"),
    ("resume-path-empty", lambda t, f, x: (t / "empty").mkdir() or (t / "o").mkdir(),
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--resume", t / "empty"], "trainer_state.json missing"),
    ("resume-path-truncated", lambda t, f, x: _truncate_all(_copy(f, t / "src")) and (t / "o").mkdir(),
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--resume", t / "src" / "checkpoints" / "step-0000004"],
     "unreadable: student.safetensors"),
    ("resume-path-is-a-run-dir", lambda t, f, x: _copy(f, t / "src") and (t / "o").mkdir(),
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--resume", t / "src"], "a run directory"),
    ("resume-other-student", lambda t, f, x: _copy(f, t / "o"),
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--resume", "auto", "--set",
                      "student_model=sad_kaggle:tiny-teacher"], "student_model"),
    ("resume-other-max-length", lambda t, f, x: _copy(f, t / "o"),
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--resume", "auto", "--set", "max_length=96"],
     "max_length: 128 → 96"),
    ("resume-other-effective-batch", lambda t, f, x: _copy(f, t / "o"),
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--resume", "auto", "--set", "batch_size=4",
                      "--set", "gradient_accumulation_steps=1"], "effective batch"),
    ("resume-crafted-pickle", lambda t, f, x: _crafted(_copy(f, t / "o")),
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--resume", "auto"], "could run code"),
    ("text-random-bytes", None,
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--set", f"dataset={x['random.txt']}"], "replacement"),
    ("text-latin-1", None,
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--set", f"dataset={x['latin1.txt']}"], "text_encoding"),
    ("text-empty", None,
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--set", f"dataset={x['empty.txt']}"], "empty"),
    ("text-gz-truncated", None,
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--set", f"dataset={x['truncated.txt.gz']}"],
     "truncated.txt.gz"),
    ("text-gz-corrupt", None,
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--set", f"dataset={x['corrupt.txt.gz']}"],
     "corrupt.txt.gz"),
    ("text-relative-path-missing", None,
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--set", "dataset=data/train.txt"], "no such local file"),
    ("model-not-a-model-dir", None,
     lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o", "--set", f"teacher_model={x['not-a-model']}"],
     "teacher_model"),
    ("session-start-garbage", None, lambda t, f, x: ["sad-train", *SMALL, "--output-dir", t / "o"], "SAD_SESSION_START"),
    ("cache-shard-windows-0", None,
     lambda t, f, x: ["sad-cache", *SMALL[:2], "--output", t / "o" / "cache", "--shard-windows", "0"], "--shard-windows"),
    ("cache-shard-windows-negative", None,
     lambda t, f, x: ["sad-cache", *SMALL[:2], "--output", t / "o" / "cache", "--shard-windows", "-1"], "--shard-windows"),
    ("cache-output-is-a-file", lambda t, f, x: (t / "o").mkdir() or (t / "o" / "cache").write_text("x"),
     lambda t, f, x: ["sad-cache", *SMALL[:2], "--output", t / "o" / "cache"], "--output"),
    ("cache-corrupt-manifest", lambda t, f, x: (t / "o" / "cache").mkdir(parents=True) or
     (t / "o" / "cache" / "manifest.json").write_text("{not json"),
     lambda t, f, x: ["sad-cache", *SMALL[:2], "--output", t / "o" / "cache"], "manifest.json"),
    ("diagnose-negative-throughput", None, lambda t, f, x: ["sad-diagnose", "--preset", "tiny-cpu", "--throughput", "-5"],
     "--throughput"),
    ("diagnose-fix-output-is-a-dir", lambda t, f, x: (t / "o").mkdir(),
     lambda t, f, x: ["sad-diagnose", "--preset", "tiny-cpu", "--fix", "--output", t / "o"], "--output"),
    ("align-negative-max-bytes", None,
     lambda t, f, x: ["sad-align-report", "--teacher", "sad_kaggle:tiny-teacher", "--student", "sad_kaggle:tiny-student",
                      "--max-bytes", "-1"], "--max-bytes"),
    ("align-random-bytes", None,
     lambda t, f, x: ["sad-align-report", "--teacher", "sad_kaggle:tiny-teacher", "--student", "sad_kaggle:tiny-student",
                      "--text", x["random.txt"]], "replacement"),
    ("align-corrupt-gz", None,
     lambda t, f, x: ["sad-align-report", "--teacher", "sad_kaggle:tiny-teacher", "--student", "sad_kaggle:tiny-student",
                      "--text", x["corrupt.txt.gz"]], "corrupt.txt.gz"),
    ("eval-missing", None, lambda t, f, x: ["sad-eval", t / "nowhere"], "no such checkpoint"),
    ("eval-crafted-pickle", lambda t, f, x: _crafted(_copy(f, t / "o")),
     lambda t, f, x: ["sad-eval", t / "o" / "checkpoints" / "step-0000004"], "could run code"),
]


@pytest.mark.parametrize("name,build,command,word", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(tmp_path, finished, texts, name, build, command, word):
    if build: build(tmp_path, finished, texts)
    before = tree_hash(tmp_path)
    env = {"SAD_SESSION_START": "abc"} if name == "session-start-garbage" else None
    r = run(*command(tmp_path, finished, texts), env=env)
    assert r.returncode == EXIT_BAD_INPUT, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    line = one_line(r.stderr)
    assert word in line, line
    assert tree_hash(tmp_path) == before, "the output directory changed"
    assert not (tmp_path / "code-ran").exists(), "the checkpoint's pickle ran code"


def test_the_suite_size_is_the_readmes():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"{len(CASES)} bad inputs" in readme, f"the README's reliability section should say {len(CASES)} bad inputs"
