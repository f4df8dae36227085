"""Quantized KV cache (`kv_type="q8_0"` / `"q4_0"`, read by the fused flash_attn op).

- SmolLM2 (the real Q4_1 GGUF) against HF float32: teacher forced on the reference prompts
  (tests/data/smollm2-reference.json), a q8_0 cache gives HF's argmax wherever HF's top-2 margin
  is >= 0.3. Over a ~700-token text (HF reading the same GGUF): argmax equal wherever the margin is
  >= 0.5, in one prefill pass and decoding step by step deep in the context, and the text's
  perplexity within 2% of HF's. (Measured on that text: f16 and q8_0 caches each disagree with HF
  once at a margin in [0.3, 0.5), from the q8_0 activations of the matmuls; perplexity HF 38.19,
  f16 38.27, q8_0 38.52, q4_0 46.61: q4_0 is the lossy choice, q8_0 the recommended one.)
- Memory: the q8_0 cache is about half the f16 one (34 bytes per 32 values vs 64), q4_0 about a
  quarter, as Model.memory reports.
- Exactness of the engine around it: chunked prefill equals one pass, batched sequences equal
  each alone, bit for bit; a saved state continues exactly and is refused by an f16 model.
- GPT-J with a q8_0 cache against HF; bad kv_type values and head sizes are clear errors.
"""
import numpy as np
import pytest

import gguf_tiny as gt
from ggmlpy import Model, _core

TEXT = (
    "The lighthouse stood at the end of a narrow spit of rock, and for most of the year the only "
    "people who saw it up close were the keeper and the men who brought his supplies. Every second "
    "Tuesday a small boat came out from the harbour with flour, lamp oil, newspapers a week old and, "
    "when the weather allowed, a letter or two. The keeper, a patient man named Elias, kept a log of "
    "every ship that passed, every change in the wind and every repair he made to the lamp.\n\n"
    "In the winter the storms came in from the west. Waves broke over the lower gallery and the whole "
    "tower hummed with the wind. Elias would climb the spiral stairs every four hours to trim the wick "
    "and wind the clockwork that turned the great lens. He said later that he was never afraid of the "
    "sea itself, only of the lamp going dark on a night when a ship was close to the rocks.\n\n"
    "Spring brought calmer water and the first fishing boats. Children from the village sometimes "
    "rowed out on Sunday afternoons to ask him about the birds that nested in the cliffs below the "
    "tower: gulls, guillemots and, once, a pair of puffins that stayed for three summers. He showed "
    "them how to read the barometer, how to tell a squall from a passing shower by the colour of the "
    "clouds, and how the lens bent the light of a single flame into a beam that reached twenty miles.\n\n"
    "When the lighthouse was finally automated, the engineers who came to install the electric lamp "
    "found his logs stacked neatly in the storeroom, forty years of them, each page written in the "
    "same careful hand. They are kept today in the town museum, where visitors can read, on the last "
    "page, the keeper's final entry: wind south-west, sea moderate, light burning steady, all well.\n\n"
    "The museum has arranged the logs by decade. The earliest volumes are bound in green cloth and "
    "their pages have turned the colour of weak tea; the later ones are ordinary school exercise "
    "books, bought in the village shop when the official ledgers stopped arriving. Reading them in "
    "order, one notices small changes: the handwriting grows larger, the entries about ships grow "
    "shorter as radio and radar make the light less important, and the notes about birds, weather "
    "and visitors grow longer, as if the keeper had more time and fewer people to talk to.\n\n"
    "Historians have used the logs to study the coast. A marine biologist counted the nesting seabirds "
    "he recorded each spring and found that their numbers fell by half over the forty years. A "
    "climatologist compared his daily wind readings with the records of the nearest weather station "
    "and found them remarkably accurate. A retired captain searched them for the night in 1962 when "
    "his ship lost power off the point, and there it was, in the same careful hand: a steamer drifting "
    "north, no lights, rockets fired at ten past two, lifeboat called, all hands safe by morning.\n\n"
    "The lighthouse itself still stands. The electric lamp turns on at dusk and off at dawn without "
    "anyone climbing the stairs, and a sensor reports its state to an office two hundred miles away. "
    "The keeper's cottage is rented to holidaymakers in the summer. Most of them never read the logs, "
    "but a framed copy of the last page hangs by the door, and some of them, on a calm evening, stand "
    "on the gallery and watch the beam sweep across the water, as he did for forty years."
)
MARGIN = 0.3        # the reference prompts
MARGIN_LONG = 0.5   # the long text (see the module docstring)


@pytest.fixture(scope="module")
def hf_ref(smollm2_path):
    """(ids, HF logits [n, vocab]) for TEXT, HF reading the same GGUF (dequantized to float32)."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(str(smollm2_path.parent), gguf_file=smollm2_path.name,
                                              dtype=torch.float32).eval()
    with Model(smollm2_path, n_ctx=64, n_threads=1) as m:
        ids = m.tokenize(TEXT)
    assert len(ids) > 600
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0].float().numpy()
    return ids, logits


def _margins(logits):
    top2 = np.sort(logits, axis=-1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _perplexity(logits, ids):
    lg = logits[:-1].astype(np.float64)
    mx = lg.max(-1)
    lse = mx + np.log(np.exp(lg - mx[:, None]).sum(-1))
    return float(np.exp(np.mean(lse - lg[np.arange(len(ids) - 1), ids[1:]])))


@pytest.mark.parametrize("which", [0, 1])
def test_reference_prompts_teacher_forced(smollm2_path, smollm2_reference, which):
    p = smollm2_reference["prompts"][which]
    g = p["greedy"]
    with Model(smollm2_path, n_ctx=256, n_threads=2, kv_type="q8_0") as m:
        logits = m.eval(p["ids"], logits="last")
        checked = 0
        for step, (ref_id, margin) in enumerate(zip(g["new_ids"], g["top2_margin"])):
            if margin >= MARGIN:
                assert int(np.argmax(logits)) == ref_id, f"step {step}: ref {ref_id} margin {margin}"
                checked += 1
            logits = m.eval([ref_id], logits="last")
    assert checked >= len(g["new_ids"]) // 2


@pytest.mark.parametrize("kv_type", ["f16", "q8_0"])
def test_long_text_matches_hf(smollm2_path, hf_ref, kv_type):
    ids, ref = hf_ref
    sure = _margins(ref) >= MARGIN_LONG
    with Model(smollm2_path, n_ctx=1024, n_threads=2, kv_type=kv_type) as m:
        ours = m.eval(ids, logits="all")                       # prefill (two chunks of 512)
        agree = ours.argmax(-1) == ref.argmax(-1)
        bad = np.nonzero(sure & ~agree)[0]
        assert len(bad) == 0, f"{kv_type}: positions {bad[:10]} disagree with HF at margin >= {MARGIN_LONG}"
        assert sure.sum() > 300 and agree.mean() > 0.93
        assert _perplexity(ours, ids) / _perplexity(ref, ids) < 1.02
        # decode: the last 48 positions one token at a time, over a cache ~660 deep
        m.reset()
        tail = 48
        m.eval(ids[:-tail], logits=None)
        for k in range(len(ids) - tail, len(ids)):
            row = m.eval([ids[k]], logits="last")
            if sure[k]:
                assert int(np.argmax(row)) == int(np.argmax(ref[k])), f"{kv_type}: decode position {k}"


def test_memory_and_q4_0(smollm2_path, hf_ref):
    ids, ref = hf_ref
    kv, ppl = {}, {}
    for t in ("f16", "q8_0", "q4_0"):
        with Model(smollm2_path, n_ctx=1024, n_threads=2, kv_type=t) as m:
            kv[t] = m.memory["kv_bytes"]
            if t != "f16":
                ppl[t] = _perplexity(m.eval(ids, logits="all"), ids)
    # SmolLM2: 30 layers x 2 x 192 values per position x 1024 positions
    assert kv["f16"] == 30 * 2 * 192 * 1024 * 2
    assert kv["q8_0"] == 30 * 2 * 192 * 1024 * 34 // 32          # 0.53 of f16
    assert kv["q4_0"] == 30 * 2 * 192 * 1024 * 18 // 32          # 0.28 of f16
    # q4_0 is coarser (4-bit K loses SmolLM2's small channels next to its outliers), still the model
    hf_ppl = _perplexity(ref, ids)
    assert ppl["q8_0"] < ppl["q4_0"] < 1.4 * hf_ppl


def test_chunked_prefill_and_threads_are_exact(smollm2_path, hf_ref):
    ids = hf_ref[0][:300]
    with Model(smollm2_path, n_ctx=512, n_threads=2, kv_type="q8_0") as m:
        whole = m.eval(ids, logits="all")
        m.reset()
        parts = [m.eval(ids[i:i + 37], logits="all") for i in range(0, len(ids), 37)]
        assert np.array_equal(whole, np.concatenate(parts))
        m.n_threads = 1
        m.reset()
        assert np.array_equal(whole, m.eval(ids, logits="all"))


def test_batched_sequences_equal_alone(smollm2_path):
    prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a land far",
               "1, 2, 3, 4,"]
    with Model(smollm2_path, n_ctx=256, n_threads=2, kv_type="q8_0", n_seq_max=4) as m:
        batch = m.generate(prompts, max_new_tokens=24, temperature=0)
        alone = []
        for p in prompts:
            alone.append(m.generate(p, max_new_tokens=24, temperature=0))
        assert batch == alone
        # and the logits of one step, bit for bit: sequence 2 with the others vs alone
        core = m._m
        toks = [m.tokenize(p) for p in prompts]
        for s in range(4):
            core.truncate_seq(s, 0)
        together = core.eval_batch([0, 1, 2, 3], toks)
        core.truncate_seq(2, 0)
        solo = core.eval_batch([2], [toks[2]])
        assert np.array_equal(together[2], solo[0])
        # a forked sequence (its cells copied, quantized rows and all) continues as the original
        core.copy_seq(1, 3)
        nxt = int(np.argmax(together[1]))
        pair = core.eval_batch([1, 3], [[nxt], [nxt]])
        assert np.array_equal(pair[0], pair[1])


def test_state_round_trip_and_type_check(smollm2_path):
    with Model(smollm2_path, n_ctx=256, n_threads=2, kv_type="q8_0", seed=1) as m:
        m.generate("The lighthouse keeper wrote", max_new_tokens=8, temperature=0)
        state = m.save_state()
        straight = m.generate("The lighthouse keeper wrote", max_new_tokens=20, temperature=0)
        m.generate("Something else entirely", max_new_tokens=4, temperature=0)
        m.load_state(state)
        assert m.generate("The lighthouse keeper wrote", max_new_tokens=20, temperature=0) == straight
        with Model(smollm2_path, n_ctx=256, n_threads=2) as f16:
            with pytest.raises(ValueError, match="cache|type"):
                f16.load_state(state)


def test_gptj_q8_0_cache_matches_hf(tmp_path):
    hf = gt.make_gptj(n_embd=128, heads=4, seed=3)        # head size 32
    path = gt.write_gptj_gguf(hf, tmp_path / "gptj.gguf")
    ids = list(range(3, 80))
    ref = gt.hf_logits(hf, ids)
    with Model(path, n_threads=2, kv_type="q8_0") as m:
        ours = m.eval(ids, logits="all")
    assert gt.rel_err(ours, ref) < 0.02
    assert np.array_equal(ours.argmax(-1)[_margins(ref) >= MARGIN], ref.argmax(-1)[_margins(ref) >= MARGIN])


def test_cli(smollm2_path):
    import subprocess
    import sys
    run = [sys.executable, "-m", "ggmlpy.cli"]
    r = subprocess.run(run + ["bench", "-m", str(smollm2_path), "-p", "32", "-n", "4", "-r", "1", "-t", "1",
                              "-ctk", "f16,q8_0"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    rows = [line.split("|") for line in r.stdout.decode().splitlines()[2:]]
    assert [(c[6].strip(), c[7].strip()) for c in rows] == [("f16", "pp32"), ("f16", "tg4"), ("q8_0", "pp32"),
                                                            ("q8_0", "tg4")]
    r = subprocess.run(run + ["generate", "-m", str(smollm2_path), "-p", "The capital of France is", "-n", "12",
                              "--temp", "0", "-c", "256", "-ctk", "q8_0", "-t", "2"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    with Model(smollm2_path, n_ctx=256, n_threads=2, kv_type="q8_0") as m:
        text = "The capital of France is" + m.generate("The capital of France is", max_new_tokens=12, temperature=0)
    assert r.stdout.decode() == text + "\n"      # the CLI ends the text with a newline
    r = subprocess.run(run + ["generate", "-m", str(smollm2_path), "-p", "x", "-ctk", "q9"], capture_output=True,
                       timeout=300)
    assert r.returncode == 1 and "argument -ctk/--kv-type: 'q9', expected one of f16, f32, q8_0, q4_0" in r.stderr.decode()


def test_bad_kv_types(smollm2_path, tmp_path):
    with pytest.raises(ValueError, match="kv_type must be 'f16', 'f32', 'q8_0' or 'q4_0', got 'q4_1'"):
        Model(smollm2_path, kv_type="q4_1")
    with pytest.raises(TypeError, match="kv_type must be a str"):
        Model(smollm2_path, kv_type=8)
    # head size 16: a q8_0 block (32 values) would span two heads
    path = gt.write_llama_gguf(gt.make_llama(hidden=64, heads=4, kv_heads=2), tmp_path / "tiny.gguf")
    with pytest.raises(ValueError, match=r"kv_type q8_0 needs a head size that is a multiple of 32; .*tiny.gguf has 16"):
        _core.Model(str(path), kv_type="q8_0")
    with Model(path, kv_type="f16") as m:  # the float caches take any head size
        assert m.eval([1, 5, 6], logits="last").shape == (320,)
