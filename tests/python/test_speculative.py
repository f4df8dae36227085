"""Speculative decoding (python/ggmlpy/speculative.py): the text with a drafter is identical to the
text without one, greedy and sampled, on Llama (SmolLM2) and GPT-J (a tiny random model), with
prompt lookup and with a draft model; drafts are really made and kept (counted in last_stats),
rejected ones leave the KV cache, and bad drafters are refused by name."""
import numpy as np
import pytest

import gguf_tiny as gt
from ggmlpy import Model
from ggmlpy.speculative import DraftModel, PromptLookup

PARA = ("The old lighthouse stood at the edge of the cliff, its white paint peeling after years of salt and "
        "wind. Every night the keeper climbed the spiral stairs, lit the great lamp, and watched the ships "
        "pass safely through the narrow channel below.")


@pytest.fixture(scope="module")
def model(smollm2_path):
    m = Model(smollm2_path, n_ctx=512, n_threads=2)
    yield m
    m.close()


@pytest.fixture(scope="module")
def copy_prompt(model):
    return model.apply_chat_template(
        [{"role": "user", "content": "Repeat this paragraph exactly, word for word:\n\n" + PARA}])


def run(model, prompt, **kw):
    text = model.generate(prompt, **kw)
    return text, model.last_stats


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_prompt_lookup_same_text_fewer_passes(model, copy_prompt, temperature):
    kw = dict(max_new_tokens=60, temperature=temperature, seed=11)
    plain, st0 = run(model, copy_prompt, draft_model=None, **kw)
    spec, st = run(model, copy_prompt, draft_model="prompt-lookup", **kw)
    assert spec == plain and st.token_ids == st0.token_ids and plain.strip()
    assert st.draft_tokens > 0 and st.draft_accepted > 0
    # each pass emits its accepted drafts plus one token: fewer passes than tokens
    assert st.draft_passes < st.generated_tokens
    assert st.draft_passes + st.draft_accepted == st.generated_tokens or st.finish_reason == "stop"
    # the KV cache holds exactly the generated tokens: the next turn reuses all of them
    ids = model.tokenize(copy_prompt) + st.token_ids
    model.generate(ids, max_new_tokens=1, temperature=0)
    assert model.last_stats.cached_tokens == len(ids) - 1


def test_prompt_lookup_with_logprobs_stop_and_limits(model, copy_prompt):
    kw = dict(temperature=0.0, logprobs=2, stop=["keeper"])
    plain, st0 = run(model, copy_prompt, max_new_tokens=80, draft_model=None, **kw)
    spec, st = run(model, copy_prompt, max_new_tokens=80, draft_model=PromptLookup(k=4, max_ngram=2), **kw)
    assert spec == plain and "keeper" not in spec and st.finish_reason == st0.finish_reason == "stop"
    assert [(e.id, e.logprob, e.top) for e in st.logprobs] == [(e.id, e.logprob, e.top) for e in st0.logprobs]
    # max_new_tokens is never exceeded by a draft; streaming gives the same pieces' text
    for n in (1, 2, 7):
        a, sa = run(model, copy_prompt, max_new_tokens=n, temperature=0, draft_model=None)
        b, sb = run(model, copy_prompt, max_new_tokens=n, temperature=0, draft_model="prompt-lookup")
        assert a == b and sb.generated_tokens == sa.generated_tokens <= n
    pieces = list(model.generate(copy_prompt, max_new_tokens=30, temperature=0, stream=True,
                                 draft_model="prompt-lookup"))
    assert "".join(pieces) == run(model, copy_prompt, max_new_tokens=30, temperature=0, draft_model=None)[0]


def test_context_full_with_drafts(smollm2_path):
    with Model(smollm2_path, n_ctx=96, n_threads=2) as m:
        prompt = m.tokenize(PARA)[:60]
        a = m.generate(prompt, max_new_tokens=None, temperature=0, ignore_eos=True, draft_model=None)
        n = m.last_stats.generated_tokens
        b = m.generate(prompt, max_new_tokens=None, temperature=0, ignore_eos=True, draft_model="prompt-lookup")
        assert a == b and m.last_stats.finish_reason == "length" and m.last_stats.draft_tokens > 0
        # the cache fills up; the token sampled from the last position ends the text unevaluated
        assert m.last_stats.generated_tokens == n == 96 - len(prompt) + 1


def test_draft_model_same_vocab(smollm2_path, model, copy_prompt):
    with Model(smollm2_path, n_ctx=512, n_threads=2) as draft:
        plain, _ = run(model, copy_prompt, max_new_tokens=24, temperature=0.7, seed=5, draft_model=None)
        spec, st = run(model, copy_prompt, max_new_tokens=24, temperature=0.7, seed=5,
                       draft_model=DraftModel(draft, k=3))
        assert spec == plain
        # the same weights draft: every greedy draft is what greedy verification draws
        g0, _ = run(model, copy_prompt, max_new_tokens=24, temperature=0, draft_model=None)
        g1, st = run(model, copy_prompt, max_new_tokens=24, temperature=0, draft_model=draft)
        assert g1 == g0 and st.draft_tokens > 0 and st.draft_accepted == st.draft_tokens
        # the draft model stays usable on its own (same weights: its greedy text starts the same)
        assert g0.startswith(draft.generate(copy_prompt, max_new_tokens=5, temperature=0))


def test_bad_drafters(model, tmp_path):
    with pytest.raises(ValueError, match="draft_model = 'ngram'"):
        model.generate("x", max_new_tokens=1, draft_model="ngram")
    with pytest.raises(TypeError, match="draft_model must be"):
        model.generate("x", max_new_tokens=1, draft_model=3)
    with pytest.raises(ValueError, match="draft_model is the model itself"):
        model.generate("x", max_new_tokens=1, draft_model=model)
    with pytest.raises(ValueError, match="k = 0"):
        PromptLookup(k=0)
    path = gt.write_gptj_gguf(gt.make_gptj(seed=1), tmp_path / "gptj.gguf")
    with Model(path, n_threads=1) as other:
        with pytest.raises(ValueError, match="vocabularies must be the same"):
            model.generate("x", max_new_tokens=1, draft_model=other)


def test_gptj_identical_with_drafts(tmp_path):
    path = gt.write_gptj_gguf(gt.make_gptj(seed=3, vocab=300), tmp_path / "gptj.gguf")
    prompt = [1] + [5, 6, 7, 8, 9] * 6
    with Model(path, n_ctx=128, n_threads=2) as m, Model(path, n_ctx=128, n_threads=1) as draft:
        for temperature in (0.0, 0.9):
            kw = dict(max_new_tokens=40, temperature=temperature, seed=2, ignore_eos=True)
            plain = (m.generate(prompt, draft_model=None, **kw), list(m.last_stats.token_ids))
            for d in ("prompt-lookup", PromptLookup(k=3, max_ngram=4), DraftModel(draft, k=4)):
                assert (m.generate(prompt, draft_model=d, **kw), list(m.last_stats.token_ids)) == plain
        m.generate(prompt, draft_model=DraftModel(draft, k=4), max_new_tokens=20, temperature=0, ignore_eos=True)
        st = m.last_stats
        assert st.draft_accepted == st.draft_tokens > 0      # the same model: all greedy drafts kept


def test_model_default_drafter(smollm2_path, copy_prompt):
    with Model(smollm2_path, n_ctx=512, n_threads=2, draft_model="prompt-lookup") as m:
        a = m.generate(copy_prompt, max_new_tokens=30, temperature=0)
        assert m.last_stats.draft_passes > 0
        b = m.generate(copy_prompt, max_new_tokens=30, temperature=0, draft_model=None)
        assert m.last_stats.draft_passes == 0 and a == b
    np.testing.assert_equal(PromptLookup(k=3).propose([1, 2, 3, 9, 1, 2], 3), [3, 9, 1])
    assert PromptLookup(k=3).propose([1, 2, 3], 3) == []
