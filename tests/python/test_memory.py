"""Memory while generating with SmolLM2 (mmap): anonymous memory (RssAnon in /proc/self/status)
stays under 64 MB + the KV cache, and the weights are file-backed pages of the mapped GGUF
(smaps: the file's mapping has resident pages and no anonymous ones). Measured in a fresh
interpreter that imports only ggmlpy and numpy, so other tests' torch does not count. The
use_mmap=False control shows the check can fail: then the weights are anonymous."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import numpy as np
from ggmlpy import _core

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)

def file_mapping(path):
    # sum Rss / Anonymous over the smaps entries that map the model file
    rss = anon = 0
    cur = False
    real = __import__("os").path.realpath(path)
    for line in open("/proc/self/smaps"):
        parts = line.split()
        if parts and "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
            cur = len(parts) >= 6 and parts[-1] == real
        elif cur and parts[0] == "Rss:":
            rss += int(parts[1]) * 1024
        elif cur and parts[0] == "Anonymous:":
            anon += int(parts[1]) * 1024
    return rss, anon

path, use_mmap = sys.argv[1], sys.argv[2] == "1"
m = _core.Model(path, n_ctx=512, n_threads=2, use_mmap=use_mmap)
logits = m.eval(list(range(100, 164)))
peak = status("RssAnon")
for _ in range(64):
    logits = m.eval([int(np.argmax(logits))])
    peak = max(peak, status("RssAnon"))
rss, anon = file_mapping(path)
print(json.dumps(dict(rss_anon=peak, kv=m.memory["kv_bytes"], map_rss=rss, map_anon=anon,
                      mmapped=m.memory["mmapped"], file=m.memory["file_bytes"])))
"""


def run(path, use_mmap):
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(path), "1" if use_mmap else "0"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_generation_memory_is_file_backed(smollm2_path):
    r = run(smollm2_path, True)
    assert r["mmapped"]
    assert r["rss_anon"] < 64 * 2**20 + r["kv"], r
    assert r["map_rss"] > 50 * 2**20, r   # the weights in use are resident pages of the file
    assert r["map_anon"] == 0, r           # and none of them were copied


def test_no_mmap_control(smollm2_path):
    r = run(smollm2_path, False)
    assert not r["mmapped"]
    assert r["map_rss"] == 0
    assert r["rss_anon"] > r["file"] * 0.9  # weights now count as anonymous memory


def test_mlock_locks_or_explains(smollm2_path):
    from ggmlpy import _core
    m = _core.Model(smollm2_path, n_ctx=64, n_threads=2, use_mlock=True)
    mem = m.memory
    # either the pages are locked, or the reason (errno text and RLIMIT_MEMLOCK) is reported
    assert mem["mlocked"] != bool(mem["mlock_error"])
    if not mem["mlocked"]:
        assert "RLIMIT_MEMLOCK" in mem["mlock_error"] and str(smollm2_path) in mem["mlock_error"]
    else:
        vmlck = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmLck:"))
        assert vmlck * 1024 >= mem["weight_bytes"] * 0.9
    assert m.eval([504, 3575]).shape == (m.n_vocab,)
    m.close()
