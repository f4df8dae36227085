"""Models larger than the memory budget (src/io/weight_stream.h): weights beyond `mem_budget` are
streamed from the file on every forward pass. The logits must equal the normal path's exactly
(SmolLM2, tiny Llama and GPT-J models; prompt, decode and several sequences at once), the plan
must respect the budget, and the streamed pages must really leave memory (the file mapping's
resident pages in /proc/self/smaps, measured in a fresh interpreter)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gguf_tiny as gt
from ggmlpy import _core
from ggmlpy.memory import parse_size

MiB = 2**20


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    m = gt.make_llama(vocab=320, hidden=256, inter=512, layers=3, heads=4, kv_heads=2)
    return gt.write_llama_gguf(m, tmp_path_factory.mktemp("stream") / "llama-f16.gguf", outtype="f16")


@pytest.fixture(scope="module")
def tiny_gptj(tmp_path_factory):
    m = gt.make_gptj(vocab=300, n_embd=128, layers=3, heads=4)
    return gt.write_gptj_gguf(m, tmp_path_factory.mktemp("stream") / "gptj-q8_0.gguf", outtype="q8_0")


def _run(m, prompt, n_decode):
    """All prompt logits, then greedy decode logits, then two sequences in one eval_batch."""
    out = [m.eval(prompt, True)]
    tok = int(np.argmax(out[0][-1]))
    for _ in range(n_decode):
        out.append(m.eval([tok]))
        tok = int(np.argmax(out[-1]))
    out.append(m.eval_batch([1, 2], [prompt[:5], prompt[3:9]]))
    return out


def _assert_same(path, budget, threads=2, n_decode=8):
    prompt = list(range(20, 52))
    normal = _core.Model(path, n_ctx=128, n_threads=threads, n_seq_max=3)
    streamed = _core.Model(path, n_ctx=128, n_threads=threads, n_seq_max=3, mem_budget=budget)
    try:
        a, b = _run(normal, prompt, n_decode), _run(streamed, prompt, n_decode)
        for x, y in zip(a, b):
            assert np.array_equal(x, y)
        mem_a, mem = normal.memory, streamed.memory
        assert mem_a["streamed_bytes"] == 0 and mem_a["stream_passes"] == 0
        assert mem["streamed_bytes"] > 0
        assert mem["resident_bytes"] + mem["streamed_bytes"] <= mem["weight_bytes"]
        assert mem["mem_budget"] == budget
        assert mem["stream_passes"] == 1 + n_decode + 1   # every forward pass followed the plan
        assert mem["stream_prefetched"] >= mem["streamed_bytes"] * 0.5
        assert mem["stream_fetch_s"] > 0 and mem["stream_drop_s"] >= 0
        return mem
    finally:
        normal.close()
        streamed.close()


def test_smollm2_everything_streamed(smollm2_path):
    mem = _assert_same(smollm2_path, 1 * MiB)
    assert mem["resident_bytes"] == 0


@pytest.mark.parametrize("threads", [1, 2])
def test_smollm2_part_resident(smollm2_path, threads):
    budget = 60 * MiB
    mem = _assert_same(smollm2_path, budget, threads=threads, n_decode=4)
    assert mem["resident_bytes"] > 5 * MiB
    assert mem["resident_bytes"] + mem["window_bytes"] <= budget


def test_tiny_llama(tiny_llama):
    _assert_same(tiny_llama, 1)


def test_tiny_gptj(tiny_gptj):
    _assert_same(tiny_gptj, 1)


def test_fits_is_plain_mapping(smollm2_path):
    m = _core.Model(smollm2_path, n_ctx=64, n_threads=1, mem_budget=1 << 40)
    mem = m.memory
    assert mem["streamed_bytes"] == 0 and mem["window_bytes"] == 0
    assert mem["resident_bytes"] > 0.9 * mem["weight_bytes"]
    m.eval([1, 2, 3])
    assert m.memory["stream_passes"] == 0
    m.close()


def test_auto_plan_from_available_memory(smollm2_path, monkeypatch):
    # no mem_budget: the plan takes what is available (here as GGMLPY_MEM_LIMIT) less the KV cache
    # and buffers, so a model larger than that streams on its own
    monkeypatch.setenv("GGMLPY_MEM_LIMIT", str(96 * MiB))
    m = _core.Model(smollm2_path, n_ctx=64, n_threads=2)
    mem = m.memory
    assert 0 < mem["mem_budget"] < 96 * MiB
    assert mem["streamed_bytes"] > 0
    ref = _core.Model(smollm2_path, n_ctx=64, n_threads=2, mem_budget=1 << 40)
    assert np.array_equal(m.eval([504, 3575, 12, 99], True), ref.eval([504, 3575, 12, 99], True))
    m.close()
    ref.close()
    monkeypatch.delenv("GGMLPY_MEM_LIMIT")
    m = _core.Model(smollm2_path, n_ctx=64, n_threads=1)
    assert m.memory["streamed_bytes"] == 0    # this machine has room for 100 MB
    m.close()


def test_no_mmap_checks_memory_first(smollm2_path, monkeypatch):
    monkeypatch.setenv("GGMLPY_MEM_LIMIT", str(40 * MiB))
    with pytest.raises(MemoryError, match=r"use_mmap=False.*map it instead"):
        _core.Model(smollm2_path, n_ctx=64, n_threads=1, use_mmap=False)


SMAPS = r"""
import json, os, sys
import numpy as np
from ggmlpy import _core

def mapped_rss(path):
    real, rss, cur = os.path.realpath(path), 0, False
    for line in open("/proc/self/smaps"):
        parts = line.split()
        if parts and "-" in parts[0] and not parts[0].endswith(":"):
            cur = len(parts) >= 6 and parts[-1] == real
        elif cur and parts[0] == "Rss:":
            rss += int(parts[1]) * 1024
    return rss

path, budget = sys.argv[1], int(sys.argv[2])
m = _core.Model(path, n_ctx=128, n_threads=2, mem_budget=budget)
logits = m.eval(list(range(100, 132)))
peak = 0
for _ in range(6):
    logits = m.eval([int(np.argmax(logits))])
    peak = max(peak, mapped_rss(path))
print(json.dumps(dict(peak=peak, mem=m.memory)))
"""


def _mapped_peak(path, budget):
    out = subprocess.run([sys.executable, "-c", SMAPS, str(path), str(budget)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_streamed_pages_leave_memory(smollm2_path):
    budget = 40 * MiB
    r = _mapped_peak(smollm2_path, budget)
    mem = r["mem"]
    assert mem["streamed_bytes"] > 50 * MiB
    # resident + window + the unit being read ahead, and the pages a unit shares with a neighbour
    assert r["peak"] <= budget + 4 * MiB, r
    full = _mapped_peak(smollm2_path, 1 << 40)
    assert full["peak"] > 80 * MiB, full            # the control: without a budget it all stays


def test_close_while_reading_ahead(smollm2_path):
    for _ in range(3):
        m = _core.Model(smollm2_path, n_ctx=64, n_threads=2, mem_budget=8 * MiB)
        m.eval([1, 2, 3])
        m.close()        # joins the I/O thread, then unmaps
    with pytest.raises(ValueError, match="closed"):
        m.eval([1])


@pytest.mark.parametrize("value, expected", [(0, 0), (123, 123), ("6GiB", 6 * 2**30), ("6G", 6 * 10**9),
                                             ("512 MiB", 512 * MiB), ("1.5GB", 1_500_000_000), (np.int64(7), 7)])
def test_parse_size(value, expected):
    assert parse_size("mem_budget", value) == expected


@pytest.mark.parametrize("value, exc", [(-1, ValueError), ("6X", ValueError), ("", ValueError), ("GiB", ValueError),
                                        (True, TypeError), (1.5, TypeError), (None, TypeError), (2**63, ValueError)])
def test_bad_mem_budget(smollm2_path, value, exc):
    from ggmlpy import Model
    with pytest.raises(exc, match="mem_budget"):
        Model(smollm2_path, n_ctx=64, mem_budget=value)


def test_core_rejects_negative_budget(smollm2_path):
    with pytest.raises(ValueError, match="mem_budget must be >= 0"):
        _core.Model(smollm2_path, n_ctx=64, mem_budget=-5)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ggmlpy.cli", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))


def test_cli_info_shows_plan(smollm2_path):
    r = _cli("info", "-m", str(smollm2_path), "--mem-budget", "50MiB")
    assert r.returncode == 0, r.stderr
    assert "budget 50.00 MiB" in r.stdout
    assert "resident" in r.stdout and "streamed from the file on every forward pass" in r.stdout
    r = _cli("info", "-m", str(smollm2_path))
    assert r.returncode == 0, r.stderr
    assert "all " in r.stdout and "resident (mapped from the file, no copy)" in r.stdout


def test_cli_generate_streams_and_reports(smollm2_path):
    args = ["generate", "-m", str(smollm2_path), "-p", "The capital of France is", "-n", "8", "--temp", "0",
            "-c", "128", "-t", "2"]
    a, b = _cli(*args), _cli(*args, "--mem-budget", "50MB")
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    assert a.stdout == b.stdout                      # same greedy text
    assert "streamed from the file" in b.stderr and "streamed from the file" not in a.stderr
    r = _cli(*args, "--mem-budget", "6X")
    assert r.returncode == 1 and "--mem-budget" in r.stderr and "Traceback" not in r.stderr
