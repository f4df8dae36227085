"""`ggmlpy` CLI end to end in subprocesses: argument and file errors print one line and exit 1
(no traceback); `generate` on SmolLM2 greedy matches the HF reference text up to the first
low-margin step, is identical with -t 1 and -t 2, honours --stop, streams, writes the summary to
stderr; Ctrl-C exits cleanly; no -m uses the cached default model; `bench` prints the table."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARGIN = 0.25


def cli(*args, env=None, timeout=300, input=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "ggmlpy.cli", *args], capture_output=True, timeout=timeout,
                          env=e, input=input)


def one_line_error(r, *needles):
    err = r.stderr.decode()
    assert r.returncode == 1, (r.returncode, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _byte_decoder():
    """GPT-2 byte-level alphabet -> byte (the published mapping, written out here)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def reference_prefix(prompt_ref):
    """Greedy text of the reference up to the first step whose top-2 margin is below MARGIN."""
    g = prompt_ref["greedy"]
    k = next((i for i, m in enumerate(g["top2_margin"]) if m < MARGIN), len(g["top2_margin"]))
    dec = _byte_decoder()
    return bytes(dec[c] for tok in g["tokens"][:k] for c in tok).decode("utf-8"), k


# ---- errors (no model needed) ----------------------------------------------------------------
def test_missing_model_file(tmp_path):
    one_line_error(cli("generate", "-m", str(tmp_path / "nope.gguf"), "-p", "x"), "nope.gguf", "not found")


@pytest.mark.parametrize("args,needle", [
    (["--top-p", "2"], "--top-p"), (["--temp", "-1"], "--temp"), (["-n", "-5"], "-n/--n-predict"),
    (["-t", "-2"], "--threads"), (["-b", "0"], "--batch-size"), (["--min-p", "1.5"], "--min-p"),
    (["-n", "abc"], "-n/--n-predict"), (["--bogus"], "--bogus"), (["--repeat-penalty", "0"], "--repeat-penalty"),
])
def test_bad_arguments(tmp_path, args, needle):
    one_line_error(cli("generate", "-m", str(tmp_path / "x.gguf"), "-p", "hi", *args), needle)


def test_no_prompt_and_bad_prompt_file(tmp_path):
    one_line_error(cli("generate", "-m", "x.gguf"), "no prompt")
    one_line_error(cli("generate", "-m", "x.gguf", "-f", str(tmp_path / "missing.txt")), "prompt file not found")
    one_line_error(cli("generate", "-m", "x.gguf", "-p", "a", "-f", "b"), "not both")


def test_unknown_command():
    r = cli("frobnicate")
    assert r.returncode == 1 and b"invalid choice" in r.stderr and b"Traceback" not in r.stderr


@pytest.mark.parametrize("content,needle", [
    (b"", "gguf"), (b"GGUF", ""), (b"NOTAGGUF" * 100, "gguf"), (b"GGUF\x03\x00\x00\x00" + b"\xff" * 40, ""),
])
def test_bad_model_files(tmp_path, content, needle):
    p = tmp_path / "bad.gguf"
    p.write_bytes(content)
    line = one_line_error(cli("generate", "-m", str(p), "-p", "x", "-n", "1"))
    assert "bad.gguf" in line
    assert needle in line.lower()


def test_truncated_real_model(tmp_path, smollm2_path):
    p = tmp_path / "trunc.gguf"
    with open(smollm2_path, "rb") as f:
        p.write_bytes(f.read(5_000_000))
    one_line_error(cli("generate", "-m", str(p), "-p", "x", "-n", "1"), "trunc.gguf")


# ---- generation on SmolLM2 -------------------------------------------------------------------
def test_generate_greedy_matches_reference(smollm2_path, smollm2_reference):
    ref = smollm2_reference["prompts"][0]
    prefix, k = reference_prefix(ref)
    assert k >= 3 and prefix.startswith(" Paris.")
    r = cli("generate", "-m", str(smollm2_path), "-p", ref["text"], "-n", "32", "--temp", "0", "-t", "2")
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert out.startswith(ref["text"] + prefix), out
    err = r.stderr.decode()
    for key in ("load time:", "prompt:", "generation:", "tokens/s", "peak RSS:"):
        assert key in err
    m = re.search(r"prompt:\s+(\d+) tokens", err)
    assert m and int(m.group(1)) == len(ref["ids"])


def test_generate_with_drafts_prints_the_same_text(smollm2_path, tmp_path):
    prompt = "Repeat: " + "the cat sat on the mat. " * 3
    base = ["generate", "-m", str(smollm2_path), "-p", prompt, "-n", "24", "--temp", "0", "-t", "2", "--ignore-eos"]
    plain = cli(*base)
    assert plain.returncode == 0, plain.stderr.decode()
    for extra in (["--draft", "prompt-lookup"], ["--draft", "prompt-lookup", "--draft-k", "4"],
                  ["--draft", str(smollm2_path), "--draft-k", "3"]):
        r = cli(*base, *extra)
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == plain.stdout
        assert re.search(r"drafts:\s+\d+ of \d+ drafted tokens kept", r.stderr.decode())
    one_line_error(cli(*base, "--draft-k", "4"), "--draft-k needs --draft")
    one_line_error(cli(*base, "--draft", "prompt-lookup", "--draft-k", "1"), "--draft-k")
    import gguf_tiny as gt
    other = gt.write_gptj_gguf(gt.make_gptj(seed=1), tmp_path / "gptj.gguf")
    one_line_error(cli(*base, "--draft", str(other)), "vocabularies must be the same")


def test_threads_1_and_2_identical(smollm2_path, smollm2_reference):
    outs = []
    for t in ("1", "2"):
        r = cli("generate", "-m", str(smollm2_path), "-p", smollm2_reference["prompts"][1]["text"], "-n", "24",
                "--temp", "0", "--ignore-eos", "-t", t, "--no-echo")
        assert r.returncode == 0, r.stderr.decode()
        outs.append(r.stdout)
    assert outs[0] == outs[1] and len(outs[0].strip()) > 10


def test_second_prompt_reference(smollm2_path, smollm2_reference):
    ref = smollm2_reference["prompts"][1]
    prefix, k = reference_prefix(ref)
    r = cli("generate", "-m", str(smollm2_path), "-p", ref["text"], "-n", str(k), "--temp", "0", "--no-echo")
    assert r.returncode == 0
    assert r.stdout.decode().startswith(prefix)


def test_stop_string(smollm2_path):
    r = cli("generate", "-m", str(smollm2_path), "-p", "The capital of France is", "-n", "32", "--temp", "0",
            "--stop", "\n", "--stop", "zzz")
    assert r.returncode == 0
    assert r.stdout.decode() == "The capital of France is Paris.\n"
    assert "stopped: stop" in r.stderr.decode()


def test_prompt_from_file_and_sampling_seed(smollm2_path, tmp_path):
    f = tmp_path / "prompt.txt"
    f.write_text("Once upon a time", encoding="utf-8")
    args = ["generate", "-m", str(smollm2_path), "-f", str(f), "-n", "16", "-s", "42", "--temp", "1.0", "--no-echo"]
    a, b = cli(*args), cli(*args)
    assert a.returncode == 0 and a.stdout == b.stdout and a.stdout.strip()


def test_prompt_longer_than_context(smollm2_path):
    one_line_error(cli("generate", "-m", str(smollm2_path), "-p", "word " * 100, "-c", "32", "-n", "4"), "-c/--ctx-size")


def test_ctrl_c_stops_cleanly(smollm2_path):
    e = dict(os.environ)
    p = subprocess.Popen([sys.executable, "-m", "ggmlpy.cli", "generate", "-m", str(smollm2_path), "-p", "Hello",
                          "-n", "-1", "--ignore-eos", "-c", "4096", "-t", "1"], env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         # a runner started as a background job ignores SIGINT, and children
                         # inherit that: give the child the default handler (Python's Ctrl-C)
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = p.stdout.read(8)                  # generation has started
    assert first
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err.decode()
    assert b"Traceback" not in err
    assert b"generation:" in err and b"interrupted" in err


def test_default_model_from_cache(smollm2_path, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / smollm2_path.name).symlink_to(smollm2_path)
    r = cli("generate", "-p", "The capital of France is", "-n", "3", "--temp", "0",
            env={"GGMLPY_MODELS_DIR": str(models), "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr.decode()
    assert "using the default model" in r.stderr.decode()
    assert r.stdout.decode().startswith("The capital of France is Paris")


def test_bench_table(smollm2_path):
    r = cli("bench", "-m", str(smollm2_path), "-p", "16", "-n", "4", "-t", "1,2", "-r", "2")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().strip().splitlines()
    assert lines[0].split("|")[1:-1] == [" model ", " size ", " params ", " backend ", " threads ", " test ", " t/s "] \
        or [c.strip() for c in lines[0].split("|")[1:-1]] == ["model", "size", "params", "backend", "threads", "test", "t/s"]
    rows = [[c.strip() for c in l.split("|")[1:-1]] for l in lines[2:]]
    assert [(r_[4], r_[5]) for r_ in rows] == [("1", "pp16"), ("1", "tg4"), ("2", "pp16"), ("2", "tg4")]
    for r_ in rows:
        assert r_[0].startswith("llama ") and r_[0].endswith("Q4_1")
        mean, sd = (float(x) for x in r_[6].split("±"))
        assert mean > 0 and sd >= 0
        assert float(r_[2].split()[0]) == pytest.approx(134.5, abs=1.0)   # SmolLM2-135M: 134.5 M params


def test_bench_depth(smollm2_path):
    r = cli("bench", "-m", str(smollm2_path), "-p", "16", "-n", "4", "-d", "0,40", "-t", "2", "-r", "1")
    assert r.returncode == 0, r.stderr.decode()
    rows = [[c.strip() for c in l.split("|")[1:-1]] for l in r.stdout.decode().strip().splitlines()[2:]]
    assert [r_[5] for r_ in rows] == ["pp16", "tg4", "pp16 @ d40", "tg4 @ d40"]
    assert all(float(r_[6].split("±")[0]) > 0 for r_ in rows)
    one_line_error(cli("bench", "-m", str(smollm2_path), "-d", "-5"), "-d/--n-depth")
    one_line_error(cli("bench", "-m", str(smollm2_path), "-d", "8", "-np", "2"), "-d/--n-depth")


def test_bench_bad_threads():
    one_line_error(cli("bench", "-m", "x.gguf", "-t", "1,x"), "-t/--threads")


def test_commands_listed():
    r = cli("--help")
    assert r.returncode == 0
    out = r.stdout.decode()
    for c in ("info", "generate", "bench", "download", "convert"):
        assert c in out
    r = cli("generate", "--help")
    assert r.returncode == 0
    for flag in ("--ctx-size", "--batch-size", "--seed", "--temp", "--top-k", "--top-p", "--min-p",
                 "--repeat-penalty", "--repeat-last-n", "--presence-penalty", "--frequency-penalty",
                 "--stop", "--no-mmap", "--mlock", "--ignore-eos"):
        assert flag in r.stdout.decode()
