import os
import subprocess
from pathlib import Path

import pytest

# No test may reach a model hub: a miss would hang ~45 s on a machine without network.
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
LEGACY = ROOT / "tests" / "fixtures" / "legacy"


@pytest.fixture
def legacy_dir() -> Path:
    return LEGACY


def run_cli(prog: str, *args, timeout=300) -> subprocess.CompletedProcess:
    "Run a console script as a real process, hub offline."
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([prog, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def one_line(err: str) -> str:
    "The single line a bad input must produce on stderr (no traceback)."
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


def pytest_configure(config):
    # `slow`: large vocabularies or whole runs; the README's test command runs them too (no -m filter)
    config.addinivalue_line("markers", "slow: a slower case, still run by the README's test command")
    config.addinivalue_line("markers", "browser: JupyterLab + headless Chromium (Debian's package); the README's test command runs it")
