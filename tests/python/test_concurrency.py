"""A Model shared between threads and generators (issue 15). Calls on one Model are serialized by
its lock, close() waits for the running call, and every generation keeps its own tokens, so
interleaved generators each give their single-run text. Tests that crashed the interpreter before
the fix run in a subprocess: a crash there is a test failure, not the end of the pytest run."""
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from ggmlpy import Model

PROMPTS = ["The capital of France is", "Once upon a time"]
N = 8  # new tokens per generation: enough to tell texts apart, small enough to be quick


def run_py(code, path, timeout=240):
    """Runs code in a fresh interpreter with MODEL = the model path; returns its stdout.
    Fails with the exit status and stderr when it dies (a segfault is rc -11)."""
    env = dict(os.environ)
    env.pop("GGMLPY_MEM_LIMIT", None)
    src = f"MODEL = {str(path)!r}\n" + textwrap.dedent(code)
    r = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"subprocess exited with {r.returncode}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def reference(smollm2_path):
    with Model(smollm2_path, n_ctx=128, n_threads=1) as m:
        return [m.generate(p, max_new_tokens=N, temperature=0) for p in PROMPTS]


def test_two_threads_generate_on_one_model(smollm2_path, reference):
    out = run_py(f"""
        import threading
        from ggmlpy import Model
        m = Model(MODEL, n_ctx=128, n_threads=1)
        ref = {reference!r}
        bad = []
        done = [0, 0]
        def work(i):
            try:
                for _ in range(20):
                    got = m.generate({PROMPTS!r}[i], max_new_tokens={N}, temperature=0)
                    if got != ref[i]:
                        bad.append((i, got))
                    done[i] += 1
            except BaseException as e:   # an exception would otherwise only end the thread
                bad.append((i, repr(e)))
        ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in ts: t.start()
        for t in ts: t.join()
        print("BAD", done, bad[:3]) if bad or done != [20, 20] else print("OK")
    """, smollm2_path)
    assert out.strip() == "OK", out


def test_close_during_generate(smollm2_path):
    """close() from another thread waits for the running generate() (which returns its full
    text) or comes first (generate raises 'Model is closed'); either way no crash, and the Model
    is closed afterwards. Streaming: the next step after close raises 'Model is closed'."""
    out = run_py("""
        import threading, time
        from ggmlpy import Model
        results = []
        for delay in (0.0, 0.05, 0.2):
            m = Model(MODEL, n_ctx=256, n_threads=1)
            def work():
                try:
                    text = m.generate("Once upon a time", max_new_tokens=48, temperature=0, ignore_eos=True)
                    results.append(("full", m.last_stats.generated_tokens))
                except BaseException as e:
                    results.append(("closed", str(e)))
            t = threading.Thread(target=work)
            t.start()
            time.sleep(delay)
            m.close()
            t.join()
            try:
                m.generate("x", max_new_tokens=1)
                results.append(("after close", "no error"))
            except ValueError as e:
                results.append(("after close", str(e)))
        # streaming: close while the consumer thread is between tokens
        m = Model(MODEL, n_ctx=256, n_threads=1)
        started = threading.Event()
        def consume():
            try:
                for i, piece in enumerate(m.generate("Once upon a time", max_new_tokens=64, temperature=0,
                                                     ignore_eos=True, stream=True)):
                    started.set()
                results.append(("stream", "finished"))
            except BaseException as e:
                results.append(("stream", str(e)))
        t = threading.Thread(target=consume)
        t.start()
        started.wait(60)
        m.close()
        t.join()
        print(results)
    """, smollm2_path)
    results = eval(out)
    for kind, what in results:
        if kind == "full":
            assert what == 48
        elif kind in ("closed", "after close"):
            assert what == "Model is closed"
        else:
            assert kind == "stream" and what in ("Model is closed", "finished")
    assert [k for k, _ in results].count("after close") == 3
    assert len(results) == 7, results   # every thread reported


def drain_interleaved(gens, between):
    """Advances the generators one piece each in turn until all end, calling between(step) after
    each round; returns their texts."""
    texts, live, step = [""] * len(gens), [True] * len(gens), 0
    while any(live):
        for i, g in enumerate(gens):
            if live[i]:
                try:
                    texts[i] += next(g)
                except StopIteration:
                    live[i] = False
        step += 1
        between(step)
    return texts


def test_interleaved_generators_keep_their_own_text(smollm2_path, reference):
    with Model(smollm2_path, n_ctx=128, n_threads=1) as m:
        gens = [m.generate(p, max_new_tokens=N, temperature=0, stream=True) for p in PROMPTS]

        def other_caller(step):
            if step == 3:  # another caller uses the cache in between
                assert m.generate("Hello", max_new_tokens=2, temperature=0) is not None
                m.reset()
                m.eval(m.tokenize("Unrelated text"))
        texts = drain_interleaved(gens, other_caller)
        assert texts == reference
        assert texts[0].startswith(" Paris.\n\nThe United States")


def test_interleaved_speculative_generators_and_states(smollm2_path):
    """Speculative decoding cuts rejected drafts from the cache between steps, and load_state /
    the prompt cache replace the cache under a running generator: each generator still gives the
    text it gives alone."""
    from ggmlpy import PromptCache
    text = "the cat sat on the mat. " * 4
    prompts = ["Repeat: " + text, "Say again: " + text.upper()]
    with Model(smollm2_path, n_ctx=256, n_threads=1) as m:
        alone = [m.generate(p, max_new_tokens=24, temperature=0, ignore_eos=True, draft_model=None) for p in prompts]
        m.generate(prompts[0], max_new_tokens=3, temperature=0)
        state = m.save_state()
        m.set_cache(PromptCache())
        gens = [m.generate(p, max_new_tokens=24, temperature=0, ignore_eos=True, stream=True,
                           draft_model="prompt-lookup") for p in prompts]
        texts = drain_interleaved(gens, lambda step: m.load_state(state) if step in (2, 5) else None)
        assert texts == alone


def test_many_models_in_threads(smollm2_path, reference):
    out = run_py(f"""
        import threading
        from ggmlpy import Model
        ref = {reference[0]!r}
        bad = []
        def work():
            try:
                for _ in range(3):
                    with Model(MODEL, n_ctx=64, n_threads=1) as m:
                        tok = m.tokenizer
                        got = m.generate({PROMPTS[0]!r}, max_new_tokens={N}, temperature=0)
                        if got != ref:
                            bad.append(got)
                    assert tok.n_vocab == 49152   # a tokenizer handed out stays usable after close
            except BaseException as e:
                bad.append(repr(e))
        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts: t.start()
        for t in ts: t.join()
        print("BAD", bad) if bad else print("OK")
    """, smollm2_path)
    assert out.strip() == "OK", out


def test_stress_shared_model(smollm2_path):
    """Bounded (~3 s) mix of every call on one shared Model from 4 threads, then close() while
    they run; meant to run under ASan/TSan too. Only 'Model is closed' may be raised."""
    out = run_py("""
        import random, threading, time
        from ggmlpy import Model, ContextFullError
        m = Model(MODEL, n_ctx=64, n_threads=1)
        stop = time.time() + 3.0
        errors = []
        def work(seed):
            rnd = random.Random(seed)
            while time.time() < stop:
                op = rnd.randrange(6)
                try:
                    if op == 0:
                        m.generate("Hi there", max_new_tokens=3, temperature=0)
                    elif op == 1:
                        for _ in m.generate("Tell me", max_new_tokens=3, temperature=0.7, seed=seed, stream=True):
                            pass
                    elif op == 2:
                        m.reset(); m.eval([1, 2, 3])
                    elif op == 3:
                        m.detokenize(m.tokenize("stress test"))
                    elif op == 4:
                        m.memory; m.n_past; m.n_threads = 1
                    else:
                        g = m.generate("Abandoned", max_new_tokens=5, temperature=0, stream=True)
                        next(g, None)   # left half-way: holds no lock
                except ValueError as e:
                    if str(e) != "Model is closed":
                        errors.append(repr(e))
                except ContextFullError:
                    pass
                except BaseException as e:
                    errors.append(repr(e))
        ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in ts: t.start()
        time.sleep(2.5)
        m.close()
        for t in ts: t.join()
        print("ERRORS", errors[:5]) if errors else print("OK")
    """, smollm2_path)
    assert out.strip() == "OK", out
