"""`ggmlpy perplexity` / ggmlpy.quality.perplexity (llama-perplexity's method) against HF
transformers reading the same SmolLM2 GGUF: the same chunks, each evaluated from an empty
context, its second half scored. Our PPL within 1% of HF's (ours multiplies with q8_0
activations), the "+/-" estimate within 5%, the scored-token count exact; the CLI prints
llama-perplexity's lines; bad arguments are one-line errors."""
import math
import subprocess
import sys

import numpy as np
import pytest

from ggmlpy import Model
from ggmlpy.quality import perplexity
from test_kv_quant import TEXT

N_CTX = 128


def hf_perplexity(smollm2_path, ids, n_ctx):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(str(smollm2_path.parent), gguf_file=smollm2_path.name,
                                              dtype=torch.float32).eval()
    first, nll = n_ctx // 2, []
    for c in range(len(ids) // n_ctx):
        chunk = ids[c * n_ctx:(c + 1) * n_ctx]           # SmolLM2 adds no BOS: the chunk as it is
        with torch.no_grad():
            logp = torch.log_softmax(hf(torch.tensor([chunk])).logits[0].double(), dim=-1).numpy()
        for j in range(first, n_ctx - 1):
            nll.append(-logp[j, chunk[j + 1]])
    nll = np.array(nll)
    ppl = math.exp(nll.mean())
    return ppl, ppl * math.sqrt((np.mean(nll ** 2) - nll.mean() ** 2) / (len(nll) - 1)), len(nll)


def test_matches_hf(smollm2_path):
    with Model(smollm2_path, n_ctx=N_CTX, n_threads=2) as m:
        ids = m.tokenize(TEXT)
        seen = []
        r = perplexity(m, TEXT, n_ctx=N_CTX, progress=lambda i, n, p: seen.append((i, n)))
    ref, ref_err, ref_count = hf_perplexity(smollm2_path, ids, N_CTX)
    n_chunks = len(ids) // N_CTX
    assert (r.n_tokens, r.n_chunks, r.n_scored) == (len(ids), n_chunks, ref_count)
    assert ref_count == n_chunks * (N_CTX - N_CTX // 2 - 1)
    assert seen == [(i + 1, n_chunks) for i in range(n_chunks)] and len(r.chunk_ppl) == n_chunks
    assert r.chunk_ppl[-1] == r.ppl
    assert abs(r.ppl / ref - 1) < 0.01, (r.ppl, ref)
    assert abs(r.ppl_err / ref_err - 1) < 0.05, (r.ppl_err, ref_err)
    assert str(r) == f"PPL = {r.ppl:.4f} +/- {r.ppl_err:.5f}"


def test_max_chunks_and_errors(smollm2_path):
    with Model(smollm2_path, n_ctx=N_CTX, n_threads=2) as m:
        two = perplexity(m, TEXT, n_ctx=N_CTX, max_chunks=2)
        assert two.n_chunks == 2 and two.n_scored == 2 * (N_CTX // 2 - 1)
        with pytest.raises(ValueError, match="needs at least 256"):
            perplexity(m, "A short text.", n_ctx=N_CTX)
        with pytest.raises(ValueError, match="larger than the model's context"):
            perplexity(m, TEXT, n_ctx=2 * N_CTX)
        with pytest.raises(ValueError, match="n_ctx must be an even int"):
            perplexity(m, TEXT, n_ctx=127)
        with pytest.raises(TypeError, match="text must be a str"):
            perplexity(m, b"bytes", n_ctx=N_CTX)


def test_cli(smollm2_path, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    r = subprocess.run([sys.executable, "-m", "ggmlpy.cli", "perplexity", "-m", str(smollm2_path), "-f", str(text),
                        "-c", str(N_CTX), "-t", "2", "--chunks", "3"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode().splitlines()
    with Model(smollm2_path, n_ctx=N_CTX, n_threads=2) as m:
        ref = perplexity(m, TEXT, n_ctx=N_CTX, max_chunks=3)
    assert out[0] == ",".join(f"[{i + 1}]{p:.4f}" for i, p in enumerate(ref.chunk_ppl))
    assert out[1] == f"Final estimate: {ref}"
    short = tmp_path / "short.txt"
    short.write_text("Too short.")
    r = subprocess.run([sys.executable, "-m", "ggmlpy.cli", "perplexity", "-m", str(smollm2_path), "-f", str(short),
                        "-c", "64"], capture_output=True, timeout=300)
    err = r.stderr.decode()
    assert r.returncode == 1 and "needs at least 128" in err and "Traceback" not in err
    r = subprocess.run([sys.executable, "-m", "ggmlpy.cli", "perplexity", "-m", str(smollm2_path), "-f",
                        str(tmp_path / "missing.txt")], capture_output=True, timeout=300)
    assert r.returncode == 1 and "text file not found" in r.stderr.decode() and "missing.txt" in r.stderr.decode()


# ---- KL divergence against a saved base (llama-perplexity --kl-divergence-base / --kl-divergence) ----

def _scored(m, ids, n_ctx):
    """log-softmax (float64) of every scored row, chunk by chunk, straight from Model.eval."""
    rows, first = [], n_ctx // 2
    for c in range(len(ids) // n_ctx):
        m.reset()
        lg = m.eval(ids[c * n_ctx:(c + 1) * n_ctx], logits="all")[first:-1].astype(np.float64)
        lg -= lg.max(axis=1, keepdims=True)
        rows.append(lg - np.log(np.exp(lg).sum(axis=1, keepdims=True)))
    return np.concatenate(rows)


def test_kl_divergence(smollm2_path, tmp_path):
    from ggmlpy.quality import kl_divergence, save_base
    base_path = tmp_path / "base.kl"
    with Model(smollm2_path, n_ctx=N_CTX, n_threads=2) as m:
        ids = m.tokenize(TEXT)
        base = save_base(m, TEXT, base_path, n_ctx=N_CTX)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["base.kl"]       # no temp file left
        assert base.ppl == perplexity(m, TEXT, n_ctx=N_CTX).ppl
        same = kl_divergence(m, base_path)                 # the model against itself
        ref = _scored(m, ids, N_CTX)
    assert same.n_scored == base.n_scored and same.same_top == 1.0
    assert same.kld_mean < 1e-7 and abs(same.ppl / same.ppl_base - 1) < 1e-4
    # a q4_0 KV cache against the f16 base: the statistics of the rows computed directly
    with Model(smollm2_path, n_ctx=N_CTX, n_threads=2, kv_type="q4_0") as q:
        kl = kl_divergence(q, base_path)
        cand = _scored(q, ids, N_CTX)
    expect = (np.exp(ref) * (ref - cand)).sum(axis=1)
    assert kl.kld_mean > 1e-3                              # q4_0 is visibly lossy on SmolLM2
    assert abs(kl.kld_mean / expect.mean() - 1) < 1e-3
    assert abs(kl.kld_median / np.median(expect) - 1) < 1e-2 and abs(kl.kld_max / expect.max() - 1) < 1e-3
    assert kl.same_top == (cand.argmax(1) == ref.argmax(1)).mean()
    tgt = np.concatenate([ids[c * N_CTX + N_CTX // 2 + 1:(c + 1) * N_CTX] for c in range(len(ids) // N_CTX)])
    assert abs(kl.ppl / math.exp(-cand[np.arange(len(tgt)), tgt].mean()) - 1) < 1e-9
    assert abs(kl.ppl_base / base.ppl - 1) < 1e-4
    assert "Mean    KLD:" in kl.report() and "Same top p:" in kl.report()


def test_kl_divergence_bad_bases(smollm2_path, tmp_path):
    import gguf_tiny as gt
    from ggmlpy.quality import kl_divergence, save_base
    with Model(smollm2_path, n_ctx=N_CTX, n_threads=2) as m:
        good = tmp_path / "base.kl"
        save_base(m, TEXT, good, n_ctx=N_CTX, max_chunks=2)
        (tmp_path / "junk.kl").write_bytes(b"not a base file at all")
        with pytest.raises(ValueError, match="not a ggmlpy KL-divergence base file"):
            kl_divergence(m, tmp_path / "junk.kl")
        (tmp_path / "cut.kl").write_bytes(good.read_bytes()[:-100])
        with pytest.raises(ValueError, match="bytes, expected"):
            kl_divergence(m, tmp_path / "cut.kl")
    tiny = gt.write_llama_gguf(gt.make_llama(), tmp_path / "tiny.gguf")
    with Model(tiny, n_ctx=N_CTX) as t:
        with pytest.raises(ValueError, match="vocabulary of 49152 tokens, the model 320"):
            kl_divergence(t, good)


def test_kl_cli(smollm2_path, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    base = tmp_path / "base.kl"
    run = [sys.executable, "-m", "ggmlpy.cli", "perplexity", "-m", str(smollm2_path), "-t", "2"]
    r = subprocess.run(run + ["-f", str(text), "-c", str(N_CTX), "--chunks", "2", "--kl-divergence-base", str(base)],
                       capture_output=True, timeout=300)
    assert r.returncode == 0 and base.exists(), r.stderr.decode()
    r = subprocess.run(run + ["--kl-divergence-base", str(base), "--kl-divergence", "-ctk", "q8_0"],
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "====== KL divergence statistics ======" in out and "Same top p:" in out
    r = subprocess.run(run + ["--kl-divergence"], capture_output=True, timeout=300)
    assert r.returncode == 1 and "--kl-divergence needs --kl-divergence-base" in r.stderr.decode()
