"""sad-cache on the tiny preset, then training three seeds from the one cache without loading the teacher: the same
held-out bits per byte as the live runs to 1e-3; a cache that does not match the run is refused in one line."""
import json
import re

import pytest

from conftest import one_line, run_cli


# 512 training windows (two shards): every run here takes at most 30 x 16 of them, and the whole corpus (9,745
# windows) made this cache the longest set-up of the test suite
SUBSET = ["--set", "dataset_subset_size=512"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "tiny"
    r = run_cli("sad-cache", "--preset", "tiny-cpu", *SUBSET, "--output", out, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r.stdout


def test_sad_cache_reports_its_size(cache):
    out, log = cache
    m = re.search(r"train: ([\d,]+) windows, .* ([\d.]+) bytes per student token", log)
    assert m and int(m.group(1).replace(",", "")) == 512, log
    assert float(m.group(2)) < 300                       # k = 64 on the embedded pair (P4 measures k = 128)
    man = json.loads((out / "manifest.json").read_text())
    assert set(man["splits"]) == {"train", "eval"} and man["signal"]["top_k"] == 64
    assert "teacher held-out bits per byte" in log


SEEDS, STEPS = (42, 43, 44), 30


def test_one_cache_serves_three_seeds_without_the_teacher_and_matches_the_live_runs(cache, tmp_path, monkeypatch):
    out, _ = cache
    # the live references: the default objectives (LM + KD), which a cache serves whole
    common = ["--preset", "tiny-cpu", *SUBSET, "--max-steps", str(STEPS), "--set", "data_seed=42"]
    live = {}
    for s in SEEDS:
        r = run_cli("sad-train", *common, "--set", f"seed={s}", "--output-dir", tmp_path / f"live-{s}", timeout=1800)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        live[s] = json.loads((tmp_path / f"live-{s}" / "summary.json").read_text())

    # the cached runs, in this process, with loading the teacher forbidden
    import sad_kaggle.teacher as T
    from sad_kaggle.config import DistillConfig
    from sad_kaggle.trainer import train
    real = T.load_model
    def no_teacher(name, **kw):
        assert name != "sad_kaggle:tiny-teacher", "the teacher was loaded"
        return real(name, **kw)
    monkeypatch.setattr(T, "load_model", no_teacher)
    cached = {}
    for s in SEEDS:
        lines = []
        cfg = DistillConfig.from_preset("tiny-cpu", output_dir=str(tmp_path / f"cached-{s}"), teacher_cache=str(out),
                                        seed=s, data_seed=42, max_steps=STEPS, dataset_subset_size=512)
        res = train(cfg, log=lines.append)
        assert res.state.finished and not any("objective(s) off" in l for l in lines)      # nothing turned off
        cached[s] = json.loads((tmp_path / f"cached-{s}" / "summary.json").read_text())
        assert cached[s]["teacher_tokens_per_s"] is None                      # never measured: never loaded

    for s in SEEDS:
        a, b = live[s]["student_bits_per_byte"], cached[s]["student_bits_per_byte"]
        print(f"seed {s}: held-out bits per byte live {a:.6f}, cached {b:.6f} ({b - a:+.2e})")
        assert abs(b - a) < 1e-3, (s, a, b)
        assert abs(cached[s]["teacher_bits_per_byte"] - live[s]["teacher_bits_per_byte"]) < 1e-4
        # the teacher's first choice read by log-probability (a cache serves rows by id; the first id is not the top-1)
        a, b = live[s]["top1_agreement"], cached[s]["top1_agreement"]
        print(f"seed {s}: top-1 agreement live {a:.4f}, cached {b:.4f}")
        assert abs(b - a) < 0.02, (s, a, b)
    # three different runs (the random initialization follows seed; the windows follow data_seed), not one run thrice
    assert len({round(live[s]["student_bits_per_byte"], 4) for s in SEEDS}) == 3


def test_a_cache_that_does_not_match_is_refused_in_one_line(cache, tmp_path):
    out, _ = cache
    r = run_cli("sad-train", "--preset", "tiny-cpu", *SUBSET, "--output-dir", tmp_path, "--set", f"teacher_cache={out}",
                "--set", "max_length=96", timeout=600)
    assert r.returncode == 64, r.stderr[-2000:]
    assert "data_train hash differs" in one_line(r.stderr)
    r = run_cli("sad-train", "--preset", "tiny-cpu", *SUBSET, "--output-dir", tmp_path, "--set", f"teacher_cache={out}",
                "--set", "temperature=2", timeout=600)
    assert r.returncode == 64 and "temperature: teacher_cache" in one_line(r.stderr)    # the tail at T=2 is not stored
    r = run_cli("sad-train", "--preset", "tiny-cpu", *SUBSET, "--output-dir", tmp_path, "--set", f"teacher_cache={out}",
                "--set", "kd_top_k=128", timeout=600)
    assert r.returncode == 64 and "kd_top_k <= 64" in one_line(r.stderr)


def test_a_cache_serves_another_training_seed_and_a_lower_top_k(cache, tmp_path):
    # the windows follow data_seed (default: seed), so a cache built with seed 42 serves seed 7 when data_seed stays 42;
    # a top-64 cache serves kd_top_k=32 (its first 32 entries, the rest in the tail)
    out, _ = cache
    args = ["--preset", "tiny-cpu", *SUBSET, "--max-steps", "4", "--set", "warmup_ratio=0.25",
            "--set", f"teacher_cache={out}", "--set", "eval_steps=4", "--set", "seed=7"]
    r = run_cli("sad-train", *args, "--set", "data_seed=42", "--set", "kd_top_k=32", "--output-dir", tmp_path / "seed7",
                timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    used = json.loads((tmp_path / "seed7" / "config.json").read_text())
    assert used["seed"] == 7 and used["kd_top_k"] == 32
    recs = [json.loads(l) for l in (tmp_path / "seed7" / "metrics.jsonl").read_text().splitlines() if l.strip()]
    kd = [x["raw_kd"] for x in recs if x["kind"] == "train" and not x.get("skipped")]
    assert len(kd) == 4 and all(0 < v < 50 for v in kd)
    r = run_cli("sad-train", *args, "--output-dir", tmp_path / "refused", timeout=600)
    assert r.returncode == 64 and "data_seed or seed" in one_line(r.stderr)


def test_a_truncated_shard_is_refused_before_training_and_nothing_is_written(cache, tmp_path):
    import shutil
    out, _ = cache
    copy = shutil.copytree(out, tmp_path / "cache")
    shard = sorted(copy.glob("train-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    run_dir = tmp_path / "run"
    r = run_cli("sad-train", "--preset", "tiny-cpu", *SUBSET, "--output-dir", run_dir, "--set", f"teacher_cache={copy}",
                timeout=600)
    assert r.returncode == 64, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"teacher_cache shard {shard}: unreadable" in one_line(r.stderr)
    assert not run_dir.exists()                 # no config, no step-0 checkpoint
