"""Replays the legacy-reader fuzz corpus and every saved crashing input
(tests/data/fuzz/regressions/legacy/) through tests/fuzz/fuzz_legacy.py's TestOneInput: each must parse
or raise ValueError, as under the fuzzer (which need not be installed here)."""
import importlib.util
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
DATA = Path(__file__).resolve().parents[1] / "data" / "fuzz"
INPUTS = sorted(p for d in ("corpus/legacy", "regressions/legacy") if (DATA / d).is_dir()
                for p in (DATA / d).iterdir() if p.is_file())


def _target():
    spec = importlib.util.spec_from_file_location("fuzz_legacy", FUZZ / "fuzz_legacy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", INPUTS, ids=[f"{p.parent.parent.name}/{p.name}" for p in INPUTS])
def test_legacy_reader_input(path):
    _target().TestOneInput(path.read_bytes())


def test_inputs_are_there():
    """The replay above must not pass by finding nothing (a moved corpus): 3 seeds, 3 regressions."""
    names = {f"{p.parent.parent.name}/{p.name}" for p in INPUTS}
    assert {"corpus/gptj.bin", "corpus/llama2c.bin", "regressions/gptj_dims_product_wraps_to_zero.bin"} <= names
