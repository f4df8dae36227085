"""KV prefix reuse: a prompt that extends what the cache holds evaluates only its new tokens (turn
N of a chat costs turn N's tokens), and the text is the same as from an empty cache. Also the
stop_token_ids of generate(). The evaluated tokens are counted by a proxy around the C++ core,
not taken from the stats the code under test reports."""
import pytest

import ggmlpy

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Name three colors of the rainbow."}]


class CountingCore:
    """Forwards to the real _core.Model and records the ids of every eval and truncate call."""

    def __init__(self, core):
        self._c = core
        self.evals, self.truncates = [], []

    def eval(self, ids, all_logits=False):
        self.evals.append(list(ids))
        return self._c.eval(ids, all_logits)

    def truncate(self, n):
        self.truncates.append(n)
        return self._c.truncate(n)

    def __getattr__(self, name):
        return getattr(self._c, name)


@pytest.fixture(scope="module")
def smol(smollm2_path):
    m = ggmlpy.Model(smollm2_path, n_ctx=1024, n_threads=2)
    yield m
    m.close()


@pytest.fixture
def counted(smol):
    smol.reset()
    real = smol._core
    smol._core = counter = CountingCore(real)
    yield smol, counter
    smol._core = real


def fresh_reply(model, messages, **kw):
    model.reset()
    return model.create_chat_completion(messages, temperature=0, **kw)


def test_second_turn_evaluates_only_new_tokens(counted):
    m, core = counted
    r1 = m.create_chat_completion(MESSAGES, temperature=0, max_tokens=24)
    ids1 = ggmlpy.chat.prompt_ids(m, m.apply_chat_template(MESSAGES))
    assert core.evals[0] == ids1
    # what the cache holds now: turn 1's prompt and its reply tokens; a reply cut by max_tokens
    # has its last token sampled but never evaluated
    reply = m.last_stats.token_ids
    held = ids1 + (reply if m.last_stats.finish_reason == "stop" else reply[:-1])
    assert [t for e in core.evals for t in e] == held
    messages = MESSAGES + [r1["choices"][0]["message"], {"role": "user", "content": "And two more?"}]
    ids2 = ggmlpy.chat.prompt_ids(m, m.apply_chat_template(messages))
    core.evals.clear()
    r2 = m.create_chat_completion(messages, temperature=0, max_tokens=24)
    common = 0
    while common < min(len(held), len(ids2) - 1) and held[common] == ids2[common]:
        common += 1
    assert common >= len(ids1)             # at least the whole first prompt is reused
    first = core.evals[0]
    assert first == ids2[common:]          # the prompt eval covered only the new tokens
    assert m.last_stats.cached_tokens == common
    assert m.last_stats.prompt_tokens == len(ids2)
    assert m.last_stats.prompt_tokens - m.last_stats.cached_tokens == len(first)
    # the same reply as from an empty cache
    assert r2["choices"][0]["message"]["content"] == fresh_reply(m, messages, max_tokens=24)["choices"][0]["message"]["content"]
    assert m.last_stats.cached_tokens == 0


def test_identical_prompt_evaluates_one_token(counted):
    m, core = counted
    a = m.generate("The capital of France is", max_new_tokens=8, temperature=0)
    ids = m.tokenize("The capital of France is")
    core.evals.clear()
    b = m.generate("The capital of France is", max_new_tokens=8, temperature=0)
    assert a == b
    assert core.evals[0] == ids[-1:]       # logits for sampling need the last token evaluated
    assert m.last_stats.cached_tokens == len(ids) - 1


def test_diverging_prompt_truncates_inside_a_chunk(counted):
    m, core = counted
    p1 = "Once upon a time, in a land far away, there lived a dragon"
    p2 = "Once upon a time, in a land far away, there lived a princess who"
    m.generate(p1, max_new_tokens=4, temperature=0)
    i1, i2 = m.tokenize(p1), m.tokenize(p2)
    common = next(i for i, (x, y) in enumerate(zip(i1, i2)) if x != y)
    core.evals.clear()
    core.truncates.clear()
    out = m.generate(p2, max_new_tokens=12, temperature=0)
    assert core.truncates[0] == common and core.evals[0] == i2[common:]
    m.reset()
    assert out == m.generate(p2, max_new_tokens=12, temperature=0)


def test_eval_and_reset_are_respected(counted):
    m, core = counted
    text = "Water boils at"
    m.generate(text, max_new_tokens=4, temperature=0)
    m.reset()                              # the caller emptied the cache: nothing may be reused
    core.evals.clear()
    m.generate(text, max_new_tokens=4, temperature=0)
    assert core.evals[0] == m.tokenize(text) and m.last_stats.cached_tokens == 0
    # eval() by the caller leaves tokens that a prompt starting with them reuses
    m.reset()
    ids = m.tokenize("Water boils at one hundred")
    m.eval(ids[:3])
    core.evals.clear()
    m.generate(ids, max_new_tokens=2, temperature=0)
    assert core.evals[0] == ids[3:] and m.last_stats.cached_tokens == 3


def test_interleaved_streams_with_shared_prefix(smol):
    # two generators sharing a prompt prefix, advanced in turns, each give their text alone
    p1, p2 = "List of fruits: apple,", "List of fruits: banana,"
    smol.reset()
    alone1 = smol.generate(p1, max_new_tokens=10, temperature=0)
    smol.reset()
    alone2 = smol.generate(p2, max_new_tokens=10, temperature=0)
    g1 = smol.generate(p1, max_new_tokens=10, temperature=0, stream=True)
    g2 = smol.generate(p2, max_new_tokens=10, temperature=0, stream=True)
    out1, out2 = [], []
    for a, b in zip(g1, g2):
        out1.append(a)
        out2.append(b)
    out1 += list(g1)
    out2 += list(g2)
    assert "".join(out1) == alone1 and "".join(out2) == alone2


def test_stop_token_ids(smol):
    smol.reset()
    smol.generate("The days of the week are Monday,", max_new_tokens=12, temperature=0)
    toks = list(smol.last_stats.token_ids)
    assert len(toks) == 12
    k = next(i for i in range(3, 12) if toks[i] not in toks[:i])   # first appearance, not at start
    out = smol.generate("The days of the week are Monday,", max_new_tokens=12, temperature=0,
                        stop_token_ids=[toks[k]])
    assert out == smol.detokenize(toks[:k])
    assert smol.last_stats.finish_reason == "stop" and smol.last_stats.token_ids == toks[:k]
    # ignore_eos also ignores stop_token_ids
    out = smol.generate("The days of the week are Monday,", max_new_tokens=12, temperature=0,
                        stop_token_ids=[toks[k]], ignore_eos=True)
    assert smol.last_stats.token_ids == toks
    with pytest.raises(ValueError, match="stop_token_ids"):
        smol.generate("x", stop_token_ids=[smol.n_vocab])
    with pytest.raises(TypeError, match="stop_token_ids"):
        smol.generate("x", stop_token_ids=["</s>"])


def test_logits_do_not_depend_on_how_the_prompt_was_split(smol):
    # what prefix reuse relies on: a token's logits (and KV) have the same bits whether it was
    # evaluated in one batch or after a cached prefix evaluated in other chunks, wherever the
    # cuts fall (the causal attention product's reduced length depends on the chunk: the float
    # kernels' order must not)
    import random
    import numpy as np
    ids = smol.tokenize("The quick brown fox jumps over the lazy dog. " * 8)
    smol.reset()
    whole = smol.eval(ids)
    rng = random.Random(0)
    for _ in range(12):
        cuts = sorted(rng.sample(range(1, len(ids)), 3)) + [len(ids)]
        smol.reset()
        parts, a = [], 0
        for c in cuts:
            parts.append(smol.eval(ids[a:c]))
            a = c
        np.testing.assert_array_equal(np.concatenate(parts), whole, err_msg=str(cuts))


def test_chat_turns_with_reuse_equal_fresh(smol):
    # several one-turn chats in a row share a template prefix; reusing it changes nothing
    prompts = [f"Write one short sentence about the number {i}." for i in range(4)]
    smol.reset()
    reused = [smol.chat(p, temperature=0, max_tokens=16) for p in prompts]
    assert smol.last_stats.cached_tokens > 0
    fresh = []
    for p in prompts:
        smol.reset()
        fresh.append(smol.chat(p, temperature=0, max_tokens=16))
    assert reused == fresh
