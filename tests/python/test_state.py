"""save_state / load_state and the prompt cache (python/ggmlpy/state.py): a loaded state continues
exactly as generating straight on does (same text, only the new tokens evaluated), in the same
Model, in another Model and through a file; states of other models and damaged files are refused
by name; a PromptCache brings back an earlier conversation after another one used the context."""
import os

import pytest

import gguf_tiny as gt
from ggmlpy import Model
from ggmlpy.state import ModelState, PromptCache

CHAT1 = [{"role": "user", "content": "Name three colors."}]
CHAT2 = [{"role": "user", "content": "What is two plus two?"}]


@pytest.fixture(scope="module")
def model(smollm2_path):
    m = Model(smollm2_path, n_ctx=512, n_threads=2, seed=42)
    yield m
    m.close()


def reply(m, msgs, **kw):
    r = m.create_chat_completion(msgs, max_tokens=12, **kw)
    return r["choices"][0]["message"], m.last_stats


def test_load_state_continues_exactly(model, smollm2_path, tmp_path):
    m = model
    m.reset()
    r1, _ = reply(m, CHAT1)                    # seed=None: drawn from the Model's seed generator
    state = m.save_state()
    assert state.tokens is not None and len(state.tokens) == state.n_tokens > 0
    path = tmp_path / "chat.state"
    state.save(path)
    assert os.listdir(tmp_path) == ["chat.state"]          # no temp file left behind
    turn2 = CHAT1 + [r1, {"role": "user", "content": "And two more?"}]
    straight, st = reply(m, turn2)
    assert st.cached_tokens == len(state.tokens)
    # the same Model, after something else used its context
    m.generate("Unrelated text", max_new_tokens=5)
    m.load_state(state)
    again, st2 = reply(m, turn2)
    assert again == straight and st2.cached_tokens == len(state.tokens)
    # another Model (another seed: the state's seed generator comes along) from the file
    with Model(smollm2_path, n_ctx=512, n_threads=1, seed=7) as other:
        other.load_state(ModelState.load(path))
        third, st3 = reply(other, turn2)
        assert third == straight and st3.cached_tokens == len(state.tokens)
        assert st3.prompt_tokens - st3.cached_tokens == st.prompt_tokens - st.cached_tokens


def test_bad_states_are_refused(model, tmp_path):
    model.generate("Hello", max_new_tokens=3)
    good = model.save_state()
    bad = tmp_path / "bad.state"
    bad.write_bytes(b"not a state")
    with pytest.raises(ValueError, match="not a ggmlpy state file"):
        ModelState.load(bad)
    good.save(tmp_path / "good.state")
    data = (tmp_path / "good.state").read_bytes()
    (tmp_path / "cut.state").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="bytes, expected"):
        model.load_state(ModelState.load(tmp_path / "cut.state"))
    with pytest.raises(TypeError, match="takes a ModelState"):
        model.load_state(b"x")
    gpath = gt.write_gptj_gguf(gt.make_gptj(seed=2), tmp_path / "gptj.gguf")
    with Model(gpath, n_threads=1) as g:
        g.generate([1, 5, 6], max_new_tokens=2)
        with pytest.raises(ValueError, match="belongs to a model with file"):
            model.load_state(g.save_state())
    # a refused state changed nothing: the context still continues as before
    n = model._m.n_past
    model.load_state(good)
    assert model._m.n_past == good.n_tokens == n


@pytest.mark.parametrize("on_disk", [False, True])
def test_prompt_cache_brings_back_an_earlier_conversation(smollm2_path, tmp_path, on_disk):
    with Model(smollm2_path, n_ctx=512, n_threads=2) as m, \
            Model(smollm2_path, n_ctx=512, n_threads=2) as ref:
        cache = PromptCache(capacity_bytes=256 << 20, path=tmp_path / "cache" if on_disk else None)
        m.set_cache(cache)
        a1, _ = reply(m, CHAT1, temperature=0)
        b1, _ = reply(m, CHAT2, temperature=0)        # conversation 1's context is stored
        assert len(cache) == 1 and cache.nbytes > 0
        if on_disk:
            assert len(os.listdir(tmp_path / "cache")) == 1
        turn2 = CHAT1 + [a1, {"role": "user", "content": "And two more?"}]
        a2, st = reply(m, turn2, temperature=0)
        n_hist = len(m.tokenize(m.apply_chat_template(CHAT1)))
        assert st.cached_tokens >= n_hist                # turn 2 evaluated only what is new
        # the same text as without any cache
        r1, _ = reply(ref, CHAT1, temperature=0)
        assert r1 == a1
        r2, st_ref = reply(ref, turn2, temperature=0)
        assert r2 == a2 and st.cached_tokens == st_ref.cached_tokens
        # capacity: a cache too small for a state keeps nothing
        tiny = PromptCache(capacity_bytes=1000)
        m.set_cache(tiny)
        reply(m, CHAT1, temperature=0)
        reply(m, CHAT2, temperature=0)
        assert len(tiny) == 0 and tiny.nbytes == 0
        m.set_cache(None)
        with pytest.raises(TypeError, match="PromptCache"):
            m.set_cache({})


def test_prompt_cache_lru_bound():
    cache = PromptCache(capacity_bytes=3000)
    for i in range(5):
        st = ModelState({}, tuple(range(i, i + 10)), b"\0" * 960)   # 1000 bytes each
        cache.put(st)
    assert len(cache) == 3 and cache.nbytes == 3000
    assert cache.longest_prefix(range(0, 10)) == (0, None)           # the oldest two are gone
    n, st = cache.longest_prefix([4, 5, 6, 99])
    assert n == 3 and st.tokens[0] == 4
