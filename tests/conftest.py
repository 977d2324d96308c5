import os
from pathlib import Path

import pytest

# No test may reach a model hub: a miss would hang ~45 s on a machine without network.
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
LEGACY = ROOT / "tests" / "fixtures" / "legacy"


@pytest.fixture
def legacy_dir() -> Path:
    return LEGACY
