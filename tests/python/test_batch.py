"""Many sequences at once: eval_batch gives every sequence the same logits bits as evaluating it
alone, and generate(list_of_prompts) gives each prompt the text generate(prompt) gives, on Llama
(SmolLM2 Q4_1; tiny random Llama f32/f16/q8_0) and GPT-J (tiny, f32/f16/q8_0) models, with
sequences finishing at different steps, more prompts than sequences, and forked prefixes."""
import numpy as np
import pytest

import ggmlpy
from ggmlpy import _core

import gguf_tiny as gt

PROMPTS = ["Once upon a time", "The capital of France is", "def fib(n):", "1, 2, 3, 4,",
           "My favourite food is", "In 1492, Columbus", "The best way to learn a language",
           "Dear Sir, I am writing"]


@pytest.fixture(scope="module")
def smol_solo(smollm2_path):
    m = ggmlpy.Model(smollm2_path, n_ctx=512, n_threads=2)
    yield m
    m.close()


@pytest.fixture(scope="module")
def smol8(smollm2_path):
    m = ggmlpy.Model(smollm2_path, n_ctx=512, n_threads=2, n_seq_max=8)
    yield m
    m.close()


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_batch")
    llama = gt.make_llama(seed=3)
    gptj = gt.make_gptj(seed=4)
    files = {}
    for t in ("f32", "f16", "q8_0"):
        files[("llama", t)] = gt.write_llama_gguf(llama, d / f"llama-{t}.gguf", t)
        files[("gptj", t)] = gt.write_gptj_gguf(gptj, d / f"gptj-{t}.gguf", t)
    return files


def solo_logits(core, ids_list):
    out = []
    for ids in ids_list:
        core.reset()
        out.append(core.eval(ids, True))
    return out


def check_bitwise(path, ids_list, steps=6):
    """Prefill all sequences in one pass, then decode `steps` greedy tokens per sequence in shared
    passes (sequences dropping out at different steps); every row must equal the solo run's."""
    n = len(ids_list)
    solo = _core.Model(str(path), n_ctx=128, n_threads=2)
    multi = _core.Model(str(path), n_ctx=128, n_threads=2, n_seq_max=n)
    try:
        # the solo reference: prompt, then greedy tokens one by one
        ref_rows, ref_toks = [], []
        for ids in ids_list:
            solo.reset()
            rows = [solo.eval(ids)]
            toks = []
            for _ in range(steps):
                toks.append(int(np.argmax(rows[-1])))
                rows.append(solo.eval([toks[-1]]))
            ref_rows.append(rows)
            ref_toks.append(toks)
        out = multi.eval_batch(list(range(n)), ids_list)
        for s in range(n):
            np.testing.assert_array_equal(out[s], ref_rows[s][0])
        for step in range(steps):
            live = [s for s in range(n) if step < steps - s % 3]   # some stop earlier
            out = multi.eval_batch(live, [[ref_toks[s][step]] for s in live])
            for row, s in enumerate(live):
                np.testing.assert_array_equal(out[row], ref_rows[s][step + 1])
    finally:
        solo.close()
        multi.close()


@pytest.mark.parametrize("arch", ["llama", "gptj"])
@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_eval_batch_bitwise_tiny(tiny_files, arch, outtype):
    rng = np.random.default_rng(7)
    ids_list = [rng.integers(3, 300, size=k).tolist() for k in (5, 1, 12, 3, 8, 2, 7, 4)]
    check_bitwise(tiny_files[(arch, outtype)], ids_list)


def test_eval_batch_bitwise_smollm2(smollm2_path, smol_solo):
    ids_list = [smol_solo.tokenize(p) for p in PROMPTS]
    check_bitwise(smollm2_path, ids_list, steps=4)


def test_generate_list_equals_each_alone(smol_solo, smol8):
    ref = [smol_solo.generate(p, max_new_tokens=24, temperature=0) for p in PROMPTS]
    assert smol8.generate(PROMPTS, max_new_tokens=24, temperature=0) == ref
    stats = smol8.last_stats
    assert len(stats) == 8 and all(s.generated_tokens == 24 and s.finish_reason == "length" for s in stats)
    # sampled: the same seed gives each prompt the text it gets alone with that seed
    ref = [smol_solo.generate(p, max_new_tokens=16, temperature=1.0, seed=11 + i) for i, p in enumerate(PROMPTS)]
    assert smol8.generate(PROMPTS, max_new_tokens=16, temperature=1.0, seed=[11 + i for i in range(8)]) == ref


def test_different_lengths_and_more_prompts_than_sequences(smollm2_path, smol_solo):
    # stop strings and limits end sequences at different steps; 8 prompts through 3 sequences
    # (a finished one's slot takes the next prompt)
    ref, reasons, lengths = [], [], []
    for p in PROMPTS:
        ref.append(smol_solo.generate(p, max_new_tokens=30, temperature=0, stop=["\n", "."]))
        reasons.append(smol_solo.last_stats.finish_reason)
        lengths.append(smol_solo.last_stats.generated_tokens)
    assert len(set(lengths)) > 3      # the sequences really end at different steps
    with ggmlpy.Model(smollm2_path, n_ctx=512, n_threads=2, n_seq_max=3) as m3:
        assert m3.generate(PROMPTS, max_new_tokens=30, temperature=0, stop=["\n", "."]) == ref
        assert [s.finish_reason for s in m3.last_stats] == reasons
        assert [s.generated_tokens for s in m3.last_stats] == lengths
        # token ids as prompts, and max_new_tokens 0
        ids = [smol_solo.tokenize(p) for p in PROMPTS[:2]]
        assert m3.generate(ids, max_new_tokens=0) == ["", ""]
    # a one-sequence Model runs the list one prompt after another
    with ggmlpy.Model(smollm2_path, n_ctx=512, n_threads=2) as m1:
        assert m1.generate(PROMPTS[:3], max_new_tokens=10, temperature=0) == \
            [smol_solo.generate(p, max_new_tokens=10, temperature=0) for p in PROMPTS[:3]]


def test_context_full_in_one_sequence(smollm2_path, smol_solo):
    short, longer = "Hello", "word " * 40
    with ggmlpy.Model(smollm2_path, n_ctx=64, n_threads=2, n_seq_max=2) as m, \
            ggmlpy.Model(smollm2_path, n_ctx=64, n_threads=2) as solo:
        ref = [solo.generate(p, max_new_tokens=None, temperature=0, ignore_eos=True) for p in (short, longer)]
        out = m.generate([short, longer], max_new_tokens=None, temperature=0, ignore_eos=True)
        assert out == ref
        assert all(s.finish_reason == "length" for s in m.last_stats)
        assert [s.prompt_tokens + s.generated_tokens for s in m.last_stats] == [65, 65]


def test_forked_prefix_equals_unforked(smollm2_path, smol_solo):
    system = smol_solo.tokenize("You are a helpful assistant. Answer briefly.\n")
    tails = [smol_solo.tokenize(t, add_bos=False) for t in ("Q: 2+2?\nA:", "Q: capital of Italy?\nA:")]
    with ggmlpy.Model(smollm2_path, n_ctx=256, n_threads=2, n_seq_max=3) as m:
        core = m._core
        core.reset()
        core.eval(system)                       # the shared prefix, evaluated once in sequence 0
        core.copy_seq(0, 1)
        core.copy_seq(0, 2)
        assert [core.n_past_seq(s) for s in range(3)] == [len(system)] * 3
        out = core.eval_batch([1, 2], tails)
        for row, tail in enumerate(tails):
            smol_solo._core.reset()
            np.testing.assert_array_equal(out[row], smol_solo._core.eval(system + tail))


def test_bad_input(smollm2_path, smol8):
    core = smol8._core
    with pytest.raises(ValueError, match="sequence 8 is outside"):
        core.eval_batch([8], [[1]])
    with pytest.raises(ValueError, match="sequence 1 appears more than once"):
        core.eval_batch([1, 1], [[1], [2]])
    with pytest.raises(ValueError, match="sequence 2: token id 99999"):
        core.eval_batch([2], [[99999]])
    with pytest.raises(ValueError, match="2 sequences but 1 id lists"):
        core.eval_batch([0, 1], [[1]])
    core.truncate_seq(3, 0)
    with pytest.raises(_core.ContextFullError, match="sequence 3: context full"):
        core.eval_batch([3], [[5] * 513])
    with pytest.raises(ValueError, match="truncate: n = 5 is outside"):
        core.truncate_seq(3, 5)
    with pytest.raises(ValueError, match="n_seq_max"):
        ggmlpy.Model(smollm2_path, n_seq_max=0)
    with pytest.raises(ValueError, match="stream=True takes one prompt"):
        smol8.generate(PROMPTS[:2], stream=True)
    with pytest.raises(ValueError, match="seed has 1 values for 2 prompts"):
        smol8.generate(PROMPTS[:2], seed=[1])
    with pytest.raises(ValueError, match=r"prompt\[1\] is \d+ tokens, longer than the context"):
        smol8.generate(["ok", "word " * 600])
    with pytest.raises(TypeError, match=r"prompt\[1\]\[0\]"):
        smol8.generate([[1, 2], ["x"]])


# ---- BatchEngine: continuous batching for concurrent callers -----------------------------------

def test_engine_concurrent_requests_equal_solo(smollm2_path, smol_solo):
    import threading
    from ggmlpy.batch import BatchEngine
    ref = [smol_solo.generate(p, max_new_tokens=20, temperature=0) for p in PROMPTS]
    with ggmlpy.Model(smollm2_path, n_ctx=512, n_threads=2, n_seq_max=5) as m:
        engine = BatchEngine(m, prefill_chunk=3)     # 4 slots for 8 callers; prompts fed 3 tokens a step
        out = [None] * len(PROMPTS)

        def client(i):
            req = engine.submit(m.tokenize(PROMPTS[i]), _core.Sampler(temperature=0), max_new=20)
            out[i] = "".join(req)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        # a one-sequence call on sequence 0 meanwhile
        solo_text = m.generate(PROMPTS[0], max_new_tokens=20, temperature=0)
        for t in threads:
            t.join(120)
        assert out == ref and solo_text == ref[0]
        engine.close()


def test_engine_cancel_and_close(smollm2_path, smol_solo):
    from ggmlpy.batch import BatchEngine
    with ggmlpy.Model(smollm2_path, n_ctx=512, n_threads=2, n_seq_max=2) as m:
        engine = BatchEngine(m)
        long = engine.submit(m.tokenize("Tell me a story."), _core.Sampler(temperature=0), max_new=400,
                             ignore_eos=True)
        waiting = engine.submit(m.tokenize(PROMPTS[1]), _core.Sampler(temperature=0), max_new=8)
        it = iter(long)
        first = [next(it) for _ in range(3)]
        assert engine.load() == (1, 1)              # one slot: the second request waits
        long.cancel()                                # a client that went away
        rest = list(it)
        assert long.stats.finish_reason == "interrupted" and long.stats.generated_tokens < 400
        assert first and "".join(first + rest)
        assert waiting.text() == smol_solo.generate(PROMPTS[1], max_new_tokens=8, temperature=0)
        # closing fails what is still queued, with a clear error
        a = engine.submit(m.tokenize("One"), _core.Sampler(temperature=0), max_new=400, ignore_eos=True)
        next(iter(a))
        engine.close()
        with pytest.raises(ValueError, match="closed"):
            a.text()
        with pytest.raises(ValueError, match="closed"):
            engine.submit([1], _core.Sampler(temperature=0))
    with ggmlpy.Model(smollm2_path, n_ctx=64, n_threads=2) as m1:
        with pytest.raises(ValueError, match="n_seq_max >= 2"):
            BatchEngine(m1)


def test_generate_list_with_a_json_schema(smol_solo, smol8):
    import json
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["name", "age"], "additionalProperties": False}
    prompts = [f"A person as JSON ({p}):" for p in ("a pilot", "a child", "a poet")]
    ref = [smol_solo.generate(p, max_new_tokens=40, temperature=0, json_schema=schema) for p in prompts]
    out = smol8.generate(prompts, max_new_tokens=40, temperature=0, json_schema=schema)
    assert out == ref
    for text, st in zip(out, smol8.last_stats):
        assert st.finish_reason == "stop" and set(json.loads(text)) == {"name", "age"}


def test_engine_reuses_a_slots_prefix(smollm2_path, smol_solo):
    # a chat's next turn takes the slot holding its history and evaluates only the new tokens;
    # the reply is the one an empty cache gives
    from ggmlpy.batch import BatchEngine
    turn1 = [{"role": "user", "content": "Name three colors."}]
    with ggmlpy.Model(smollm2_path, n_ctx=512, n_threads=2, n_seq_max=3) as m:
        m.start_batching(prefill_chunk=7)
        r1 = m.chat(turn1, temperature=0, max_tokens=20)
        st1 = m.last_stats
        assert st1.cached_tokens == 0
        m.chat([{"role": "user", "content": "Something else entirely."}], temperature=0, max_tokens=5)
        turn2 = turn1 + [{"role": "assistant", "content": r1}, {"role": "user", "content": "And two more?"}]
        r2 = m.chat(turn2, temperature=0, max_tokens=20)
        assert m.last_stats.cached_tokens >= st1.prompt_tokens   # the whole first prompt, at least
        m.stop_batching()
    smol_solo.reset()
    assert r1 == smol_solo.chat(turn1, temperature=0, max_tokens=20)
    smol_solo.reset()
    assert r2 == smol_solo.chat(turn2, temperature=0, max_tokens=20)
    with pytest.raises(ValueError, match="n_seq_max >= 2"):
        smol_solo.start_batching()
