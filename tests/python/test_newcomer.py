"""The rough edges a new user meets first (issue 14), each end to end: downloads without a network
fail fast in one line; `--version` and bare `ggmlpy`; the README's Python example runs as written;
generation cut by the token limit ends on a whole UTF-8 character; a warning for more threads than
usable cores; one error prefix for every command; `--help` shows defaults; bench refuses an empty
run; the Ctrl-C test holds when the runner ignores SIGINT."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import ggmlpy
from ggmlpy import Model
from ggmlpy.hub import DownloadError

ROOT = Path(__file__).resolve().parents[2]
UTF8_PROMPT = "héllo wörld ✓ 日本語"


def cli(*args, env=None, timeout=120, **kw):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "ggmlpy.cli", *args], capture_output=True, timeout=timeout,
                          env=e, **kw)


def one_error_line(r, *needles):
    err = r.stderr.decode()
    assert r.returncode == 1, (r.returncode, err)
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("ggmlpy: error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                     # nothing listens there now: connections are refused
    return port


@pytest.fixture
def no_hub(tmp_path):
    """Environment for a Hub that refuses connections, with an empty Hugging Face cache."""
    return {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "0"}


# ---- no network ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", ["*.gguf", "model.Q4_0.gguf"])
def test_download_unreachable_is_one_line_and_fast(no_hub, pattern):
    t0 = time.monotonic()
    r = cli("download", "nobody/no-model", pattern, "--quiet", env=no_hub)
    took = time.monotonic() - t0
    one_error_line(r, "nobody/no-model", "cannot connect")
    assert took < 12, f"{took:.1f} s: offline use should not wait through long retries"


def test_download_offline_mode_is_immediate(no_hub):
    t0 = time.monotonic()
    r = cli("download", "nobody/no-model", "*.gguf", env={**no_hub, "HF_HUB_OFFLINE": "1"})
    assert time.monotonic() - t0 < 8
    one_error_line(r, "nobody/no-model", "HF_HUB_OFFLINE")


def test_convert_unreachable_is_one_line(no_hub, tmp_path):
    r = cli("convert", "nobody/no-model", "-o", str(tmp_path / "out.gguf"), env=no_hub)
    one_error_line(r, "nobody/no-model", "cannot connect")
    assert not (tmp_path / "out.gguf").exists()


def test_from_pretrained_unreachable_raises_download_error(no_hub):
    code = ("from ggmlpy import Model\nfrom ggmlpy.hub import DownloadError\n"
            "try:\n    Model.from_pretrained('nobody/no-model', '*.gguf')\n"
            "except DownloadError as e:\n    print('DownloadError:', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, **no_hub})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("DownloadError: ") and "nobody/no-model" in r.stdout, r.stdout
    assert issubclass(DownloadError, OSError)


# ---- version, usage, help -------------------------------------------------------------------------
def test_version():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.decode().strip() == f"ggmlpy {ggmlpy.__version__}"


def test_bare_command_prints_usage():
    r = cli()
    out = r.stdout.decode()
    assert r.returncode == 1
    assert out.startswith("usage: ggmlpy")
    for c in ("info", "generate", "bench", "download", "convert", "quantize"):
        assert re.search(rf"^\s+{c}\s+\S", out, re.M), f"{c} not listed with its help:\n{out}"


def _subparsers():
    from ggmlpy.cli import build_parser
    import argparse
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_flag_has_help_and_help_shows_defaults():
    for name, sp in _subparsers().items():
        for a in sp._actions:
            if a.dest == "help":
                continue
            assert a.help, f"ggmlpy {name} {a.option_strings or a.dest} has no help"
        r = cli(name, "--help")
        assert r.returncode == 0
        options = r.stdout.decode().split("\noptions:\n", 1)[1]
        blocks = re.split(r"\n(?=  -)", options)            # one block per flag
        for a in sp._actions:
            if a.option_strings and a.default not in (None, False, "==SUPPRESS=="):
                flag = a.option_strings[-1]
                block = next(b for b in blocks if re.search(rf"{re.escape(flag)}\b", b.split("  ", 2)[1]))
                assert "default" in block, f"ggmlpy {name} --help: no default shown for {flag}:\n{block}"


# ---- the README's Python example, as written --------------------------------------------------------
def test_readme_python_example_runs_as_written(smollm2_path, tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README has no python example"
    models = tmp_path / "models"
    models.mkdir()
    (models / smollm2_path.name).symlink_to(smollm2_path)   # the default model, already "downloaded"
    r = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "GGMLPY_MODELS_DIR": str(models), "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout


def test_model_default_uses_the_cached_default_model(smollm2_path, tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    (models / smollm2_path.name).symlink_to(smollm2_path)
    monkeypatch.setenv("GGMLPY_MODELS_DIR", str(models))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with Model.default(n_ctx=128) as m:
        assert m.generate("The capital of France is", max_new_tokens=2, temperature=0).startswith(" Paris")


# ---- UTF-8 at the token limit ---------------------------------------------------------------------
def _mid_character_limits(m, prompt, n=24):
    """Token counts k at which the first k greedy tokens end inside a UTF-8 character."""
    m.generate(prompt, max_new_tokens=n, temperature=0)
    ids = m.last_stats.token_ids
    out, data = [], b""
    for k, t in enumerate(ids, 1):
        data += m.token_to_piece(t)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data":
                out.append((k, data[:e.start].decode("utf-8")))
    return out


def test_token_limit_mid_character_ends_on_whole_character(smollm2_path):
    with Model(smollm2_path, n_ctx=256, n_threads=1) as m:
        cuts = _mid_character_limits(m, UTF8_PROMPT)
        assert cuts, "the greedy continuation has no multi-byte character split across tokens"
        for k, whole in cuts[:3]:
            text = m.generate(UTF8_PROMPT, max_new_tokens=k, temperature=0)
            assert "\ufffd" not in text and text == whole, (k, text, whole)
            streamed = "".join(m.generate(UTF8_PROMPT, max_new_tokens=k, temperature=0, stream=True))
            assert streamed == whole
        k, whole = cuts[0]
    r = cli("generate", "-m", str(smollm2_path), "-p", UTF8_PROMPT, "-n", str(k), "--temp", "0", "-t", "1",
            "-c", "256", "--no-echo")
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode("utf-8")
    assert "\ufffd" not in out and out == whole + "\n"


# ---- threads ------------------------------------------------------------------------------------------
def test_more_threads_than_cores_warns_once(smollm2_path):
    usable = len(os.sched_getaffinity(0))
    code = (f"import warnings\nwarnings.simplefilter('always')\nfrom ggmlpy import Model\n"
            f"with warnings.catch_warnings(record=True) as w:\n"
            f"    warnings.simplefilter('always')\n"
            f"    Model({str(smollm2_path)!r}, n_ctx=64, n_threads={usable}).close()\n"
            f"    assert not w, [str(x.message) for x in w]\n"
            f"    for _ in range(2):\n"
            f"        Model({str(smollm2_path)!r}, n_ctx=64, n_threads={usable + 1}).close()\n"
            f"    print(len(w)); print(w[0].message)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    n, msg = r.stdout.strip().splitlines()
    assert n == "1" and f"n_threads = {usable + 1}" in msg and f"{usable} CPU cores" in msg
    r = cli("generate", "-m", str(smollm2_path), "-p", "Hi", "-n", "1", "-t", str(usable + 1), "-c", "64")
    assert r.returncode == 0
    err = r.stderr.decode()
    assert err.count("ggmlpy: warning: n_threads") == 1, err


def test_summary_says_1_thread(smollm2_path):
    r = cli("generate", "-m", str(smollm2_path), "-p", "Hi", "-n", "1", "-t", "1", "-c", "64")
    assert r.returncode == 0
    err = r.stderr.decode()
    assert "1 thread," in err and "1 threads" not in err


# ---- errors -------------------------------------------------------------------------------------------
def test_one_error_prefix_for_every_command(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x01" * 3)
    one_error_line(cli("quantize", str(junk), str(tmp_path / "o.gguf"), "q4_0"), "junk.gguf")
    one_error_line(cli("convert", str(tmp_path / "missing"), "-o", str(tmp_path / "o.gguf")), "missing")
    one_error_line(cli("generate", "-m", str(junk), "-p", "x"), "junk.gguf")
    one_error_line(cli("bench", "-m", str(tmp_path / "none.gguf")), "none.gguf")
    one_error_line(cli("quantize", str(junk)), "required")      # argparse errors too


def test_prompt_too_long_names_the_flag(smollm2_path):
    one_error_line(cli("generate", "-m", str(smollm2_path), "-p", "word " * 100, "-c", "32", "-n", "4"),
                   "-c/--ctx-size", "longer than the context")


def test_not_a_model_file_is_plain(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello, this is not a model\n" * 20)
    line = one_error_line(cli("generate", "-m", str(f), "-p", "x"))
    assert line == f"ggmlpy: error: {f}: not a GGUF, ggml GPT-J .bin or llama2.c .bin file"


def test_bench_nothing_to_measure():
    one_error_line(cli("bench", "-m", "x.gguf", "-p", "0", "-n", "0"), "nothing to measure")


# ---- the Ctrl-C test under a runner that ignores SIGINT -----------------------------------------------
def test_ctrl_c_test_passes_when_sigint_is_ignored(smollm2_path):
    """A background job (`pytest &` in a script) starts with SIGINT ignored, and children inherit
    that; the Ctrl-C test must restore the default handler in the child it interrupts."""
    def ignore_sigint():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "tests/python/test_cli.py") + "::test_ctrl_c_stops_cleanly"],
                       capture_output=True, text=True, timeout=300, preexec_fn=ignore_sigint,
                       env={**os.environ, "GGMLPY_TEST_MODEL": str(smollm2_path)})
    assert r.returncode == 0, r.stdout[-3000:]
    assert "1 passed" in r.stdout
