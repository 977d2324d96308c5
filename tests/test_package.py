"""Packaging: the wheel carries the assets, notebooks and exported module agree, README and CI agree."""
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_wheel_contains_assets_and_console_script(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, timeout=300)
    wheel = next(tmp_path.glob("sad_kaggle-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for asset in ("sad_kaggle/assets/model_configs/huihui-ai--Huihui-MoE-1B-A0.6B/config.json",
                  "sad_kaggle/assets/model_configs/HuggingFaceTB--SmolLM-135M/config.json",
                  "sad_kaggle/assets/tiny/teacher/config.json", "sad_kaggle/assets/tiny/student/config.json",
                  "sad_kaggle/assets/tiny/teacher/model.safetensors", "sad_kaggle/assets/tiny/teacher/tokenizer.json",
                  "sad_kaggle/assets/tiny/student/tokenizer.json", "sad_kaggle/assets/corpus/train.txt.gz",
                  "sad_kaggle/assets/corpus/eval.txt.gz", "sad_kaggle/assets/corpus/LICENSE.md"):
        assert asset in names, asset
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(entry).decode()
    assert "sad-diagnose = sad_kaggle.cli:sad_diagnose" in entry_points
    for script in ("sad-diagnose = sad_kaggle.cli:sad_diagnose", "sad-align-report = sad_kaggle.cli:sad_align_report",
                   "sad-train = sad_kaggle.cli:sad_train", "sad-eval = sad_kaggle.cli:sad_eval",
                   "sad-cache = sad_kaggle.cli:sad_cache"):
        assert script in entry_points, script


def test_assets_fit_the_budget():
    # the embedded pair ships inside the package: 20 MB of assets at most
    assets = ROOT / "sad_kaggle" / "assets"
    assert sum(f.stat().st_size for f in assets.rglob("*") if f.is_file()) < 20e6


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    cmd = next(l.strip() for l in ci.splitlines() if l.strip().startswith("HF_HUB_OFFLINE=1 nbdev_test"))
    assert cmd in (ROOT / "README.md").read_text()


def test_every_notebook_module_is_exported():
    # one notebook per module: each default_exp has its exported file
    for nb in (ROOT / "nbs").glob("[0-9]*.ipynb"):
        text = nb.read_text()
        mod = text.split("#| default_exp ", 1)[1].split("\\n", 1)[0].split('"', 1)[0].strip()
        assert (ROOT / "sad_kaggle" / f"{mod}.py").is_file(), nb.name


def readme_from_index() -> str:
    "README.md as rendered from nbs/index.ipynb: its markdown cells, image paths made relative to the repository root."
    import json
    nb = json.loads((ROOT / "nbs" / "index.ipynb").read_text())
    cells = ["".join(c["source"]).strip("\n") for c in nb["cells"] if c["cell_type"] == "markdown"]
    return "\n\n".join(cells).replace("](images/", "](nbs/images/") + "\n"


def test_readme_is_rendered_from_index():
    # nbdev's index notebook is the README's source (nbdev_readme needs quarto; this is the same rendering for
    # markdown-only cells). After editing nbs/index.ipynb: python tests/test_package.py
    assert (ROOT / "README.md").read_text() == readme_from_index(), "README.md differs from nbs/index.ipynb"
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("!["):
            assert (ROOT / line.split("](")[1].rstrip(")")).is_file(), line


if __name__ == "__main__":
    (ROOT / "README.md").write_text(readme_from_index())
