"""sad-ablate on a two-row, two-seed, four-step grid: one teacher cache, the table, the plot, and a resume after the
ablation and its running sad-train are killed without warning (finished runs are not run again), and a refusal to
mix in runs made with other settings."""
import json
import subprocess
import time

import psutil

from conftest import one_line, run_cli

ARGS = ["--preset", "tiny-cpu", "--rows", "ce,kd", "--seeds", "2", "--max-steps", "4", "--set", "warmup_ratio=0.25",
        "--set", "eval_steps=4", "--set", "dataset_subset_size=256", "--set", "eval_subset_size=16"]


def test_sad_ablate_writes_the_table_and_resumes_after_a_kill(tmp_path):
    p = subprocess.Popen(["sad-ablate", *ARGS, "--output-dir", str(tmp_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    first = tmp_path / "runs" / "ce" / "seed-42" / "summary.json"
    def finished_runs():          # the report is rewritten after every finished run
        try: return sum(r["n"] for r in json.loads((tmp_path / "ablation.json").read_text())["rows"].values())
        except (OSError, ValueError, KeyError): return 0
    t0 = time.monotonic()
    while finished_runs() < 1 and p.poll() is None and time.monotonic() - t0 < 900: time.sleep(0.2)
    for c in psutil.Process(p.pid).children(recursive=True): c.kill()    # the running sad-train, then the ablation
    p.kill(); out = p.communicate()[0]
    assert finished_runs() == 1 and first.exists(), out[-3000:]
    done_at = first.stat().st_mtime_ns

    r = run_cli("sad-ablate", *ARGS, "--output-dir", tmp_path, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert first.stat().st_mtime_ns == done_at                 # the finished run was not run again
    assert "teacher cache:" not in r.stdout                    # nor the cache written again
    rows = json.loads((tmp_path / "ablation.json").read_text())["rows"]
    assert rows["ce"]["n"] == rows["kd"]["n"] == 2 and rows["kd"]["teacher"] == "cache"
    assert 0.5 < rows["kd"]["ratio_to_ce"] < 1.5 and rows["kd"]["ratio_low"] <= rows["kd"]["ratio_to_ce"] <= rows["kd"]["ratio_high"]
    assert all(0 < run["bits_per_byte"] < 20 for row in rows.values() for run in row["runs"].values())
    md = (tmp_path / "ablation.md").read_text()
    assert "| kd | cache | 2 |" in md and "sad-ablate --preset tiny-cpu" in md and md in r.stdout
    assert (tmp_path / "ablation.png").stat().st_size > 5000

    # the same directory with another setting: refused in one line, not relabelled (the ce rows do not change)
    r = run_cli("sad-ablate", *ARGS, "--set", "alpha_kd=0.5", "--output-dir", tmp_path, timeout=300)
    assert r.returncode == 64 and "row kd seed 42 was started" in one_line(r.stderr), r.stdout[-2000:] + r.stderr[-2000:]
    assert "(alpha_kd: 1.0 then, 0.5 now)" in r.stderr


def test_sad_ablate_refuses_an_unknown_row_in_one_line(tmp_path):
    r = run_cli("sad-ablate", "--preset", "tiny-cpu", "--output-dir", tmp_path, "--rows", "ce,kd+nothing", timeout=120)
    assert r.returncode == 64 and "built-in rows are" in one_line(r.stderr)
