"""logprobs, logit_bias, logits_processor and stopping_criteria (python/ggmlpy/sampling_hooks.py)
against definitions computed here: a generated token's logprob is log_softmax of the logits that
Model.eval gives for the same tokens (teacher forcing), in every generation path (one prompt, a
list of prompts, the continuous-batching engine) and in the OpenAI shapes of create_completion /
create_chat_completion, streamed or not."""
import numpy as np
import pytest

from ggmlpy import Model

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def model(smollm2_path):
    m = Model(smollm2_path, n_ctx=512, n_threads=2, n_seq_max=3)
    yield m
    m.close()


def log_softmax64(logits):
    x = np.asarray(logits, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def forced_logprobs(model, prompt_ids, generated):
    """log_softmax rows predicting each generated token, from one eval of prompt + generated."""
    model.reset()
    logits = model.eval(list(prompt_ids) + list(generated[:-1]))
    model.reset()
    return log_softmax64(logits[len(prompt_ids) - 1:])


def check_entries(model, prompt_ids, entries, n_top, tol=1e-4):
    gen = [e.id for e in entries]
    lp = forced_logprobs(model, prompt_ids, gen)
    for i, e in enumerate(entries):
        assert abs(e.logprob - lp[i][e.id]) <= tol, (i, e.logprob, lp[i][e.id])
        want = sorted(range(lp.shape[1]), key=lambda j: (-lp[i][j], j))[:n_top]
        assert [t for t, _ in e.top] == want
        assert np.allclose([v for _, v in e.top], lp[i][want], atol=tol)


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_generate_logprobs_are_log_softmax_of_eval(model, temperature):
    ids = model.tokenize(PROMPT)
    model.generate(PROMPT, max_new_tokens=8, temperature=temperature, seed=3, logprobs=3, ignore_eos=True)
    st = model.last_stats
    assert len(st.logprobs) == st.generated_tokens == 8
    assert [e.id for e in st.logprobs] == st.token_ids
    check_entries(model, ids, st.logprobs, 3)


def test_logprobs_in_a_list_of_prompts_and_the_batch_engine(model):
    prompts = [PROMPT, "Once upon a time"]
    model.generate(prompts, max_new_tokens=5, temperature=0, logprobs=2, ignore_eos=True)
    stats = model.last_stats
    for p, st in zip(prompts, stats):
        check_entries(model, model.tokenize(p), st.logprobs, 2)
    model.start_batching()
    try:
        model.generate(PROMPT, max_new_tokens=5, temperature=0, logprobs=1, ignore_eos=True)
        st = model.last_stats
    finally:
        model.stop_batching()
    check_entries(model, model.tokenize(PROMPT), st.logprobs, 1)


def test_no_logprobs_unless_asked(model):
    model.generate(PROMPT, max_new_tokens=2, temperature=0)
    assert model.last_stats.logprobs is None


def test_logit_bias_forces_and_bans(model):
    banana = model.tokenize(" banana", add_bos=False)[0]
    assert model.generate(PROMPT, max_new_tokens=3, temperature=0, logit_bias={banana: 100}) == " banana" * 3
    greedy = model.generate(PROMPT, max_new_tokens=1, temperature=0)
    first = model.tokenize(greedy, add_bos=False)[0]
    # JSON-style string keys; a ban (-inf) changes the greedy token
    other = model.generate(PROMPT, max_new_tokens=1, temperature=0, logit_bias={str(first): float("-inf")})
    assert other != greedy
    # logprobs stay those of the model's own logits, not the biased ones
    model.generate(PROMPT, max_new_tokens=2, temperature=0, logit_bias={banana: 100}, logprobs=0)
    check_entries(model, model.tokenize(PROMPT), model.last_stats.logprobs, 0)


@pytest.mark.parametrize("bias,match", [
    ({"x": 1}, "key 'x' is not a token id"), ({10**9: 1}, "outside"), ({5: float("nan")}, "logit_bias"),
    ([1, 2], "must be a dict"),
])
def test_bad_logit_bias(model, bias, match):
    with pytest.raises((ValueError, TypeError), match=match):
        model.generate(PROMPT, max_new_tokens=1, logit_bias=bias)


def test_logits_processor_sees_the_ids_and_its_logits_are_used(model):
    ids = model.tokenize(PROMPT)
    seen = []
    only = model.tokenize(" blue", add_bos=False)[0]

    def force(input_ids, logits):
        seen.append(input_ids.copy())
        assert logits.dtype == np.float32 and logits.shape == (model.n_vocab,)
        out = np.full_like(logits, -np.inf)
        out[only] = 0.0
        return out
    text = model.generate(PROMPT, max_new_tokens=3, temperature=0.7, seed=1, logits_processor=[force])
    assert text == " blue" * 3
    assert [list(s) for s in seen] == [ids, ids + [only], ids + [only, only]]
    with pytest.raises(ValueError, match=r"logits_processor\[0\] returned shape"):
        model.generate(PROMPT, max_new_tokens=1, logits_processor=lambda i, l: l[:10])
    with pytest.raises(TypeError, match="logits_processor"):
        model.generate(PROMPT, max_new_tokens=1, logits_processor=5)


def test_stopping_criteria(model):
    ids = model.tokenize(PROMPT)
    calls = []

    def after_three(input_ids, logits):
        calls.append(len(input_ids))
        return len(input_ids) >= len(ids) + 3
    full = model.generate(PROMPT, max_new_tokens=8, temperature=0, ignore_eos=True)
    cut = model.generate(PROMPT, max_new_tokens=8, temperature=0, ignore_eos=True, stopping_criteria=after_three)
    st = model.last_stats
    assert st.generated_tokens == 3 and st.finish_reason == "stop"
    assert full.startswith(cut) and len(cut) < len(full)
    assert calls == [len(ids), len(ids) + 1, len(ids) + 2, len(ids) + 3]


def test_completion_logprobs_and_echo(model):
    ids = model.tokenize(PROMPT)
    r = model.create_completion(PROMPT, max_tokens=4, temperature=0, logprobs=2, echo=True)
    ch = r["choices"][0]
    assert ch["text"].startswith(PROMPT)
    lp = ch["logprobs"]
    n = len(ids)
    assert len(lp["tokens"]) == n + 4 and lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    # prompt tokens: log_softmax of the prompt's own logits
    model.reset()
    full = log_softmax64(model.eval(ids))
    for i in range(1, n):
        assert abs(lp["token_logprobs"][i] - full[i - 1][ids[i]]) < 1e-4
        assert len(lp["top_logprobs"][i]) <= 2
    # offsets: each token starts where the previous one's text ends
    assert lp["text_offset"][0] == 0
    assert "".join(lp["tokens"]) == ch["text"]
    for i in range(1, len(lp["tokens"])):
        assert lp["text_offset"][i] == lp["text_offset"][i - 1] + len(lp["tokens"][i - 1])
    # streamed: the same tokens and logprobs, piece by piece
    parts = list(model.create_completion(PROMPT, max_tokens=4, temperature=0, logprobs=2, echo=True, stream=True))
    assert "".join(c["choices"][0]["text"] for c in parts) == ch["text"]
    toks = [t for c in parts if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["tokens"]]
    offs = [t for c in parts if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["text_offset"]]
    assert toks == lp["tokens"] and offs == lp["text_offset"]


def test_chat_logprobs_stream_equals_whole_and_stop_strings_cut_them(model):
    msgs = [{"role": "user", "content": "Name three colors."}]
    r = model.create_chat_completion(msgs, max_tokens=12, temperature=0, logprobs=True, top_logprobs=2)
    content = r["choices"][0]["logprobs"]["content"]
    text = r["choices"][0]["message"]["content"]
    assert "".join(e["token"] for e in content) == text
    assert all(len(e["top_logprobs"]) == 2 and e["top_logprobs"][0]["logprob"] >= e["logprob"] - 1e-9
               for e in content)
    assert all(bytes(e["bytes"]).decode("utf-8", "replace") == e["token"] for e in content)
    parts = list(model.create_chat_completion(msgs, max_tokens=12, temperature=0, logprobs=True, top_logprobs=2,
                                              stream=True))
    streamed = [e for c in parts if c["choices"][0]["logprobs"] for e in c["choices"][0]["logprobs"]["content"]]
    assert streamed == content
    # a stop string inside the reply: the text ends before it, and so do the logprobs
    stop = text[len(text) // 2:len(text) // 2 + 3]
    r2 = model.create_chat_completion(msgs, max_tokens=12, temperature=0, logprobs=True, stop=stop)
    t2 = r2["choices"][0]["message"]["content"]
    c2 = r2["choices"][0]["logprobs"]["content"]
    assert len(t2) < len(text) and "".join(e["token"] for e in c2) == t2[:len("".join(e["token"] for e in c2))]
    assert len("".join(e["token"] for e in c2)) <= len(t2)
    with pytest.raises(ValueError, match="top_logprobs needs logprobs"):
        model.create_chat_completion(msgs, max_tokens=1, top_logprobs=2)
    with pytest.raises(ValueError, match="logprobs = 99"):
        model.create_completion(PROMPT, max_tokens=1, logprobs=99)
