"""Generation loop logic without a real model: a scripted stand-in for _core.Model whose logits
make the (real, greedy) sampler emit a chosen token sequence, with a byte-level token table.
Checks stop strings across token boundaries (nothing past a stop string is ever yielded), UTF-8
characters split over several tokens never being split in the stream, EOS, max_new_tokens, a full
context, and the stats."""
import numpy as np

from ggmlpy import _core
from ggmlpy.generate import GenerationStats, StopMatcher, Utf8Stream, run_generation

EOS = 0


class ScriptedTokenizer:
    def __init__(self, pieces):
        self.pieces = pieces          # id -> bytes

    def token_to_piece(self, tid):
        return self.pieces[tid]

    def is_eog(self, tid):
        return tid == EOS


class ScriptedCore:
    """eval returns logits whose argmax is the next scripted token."""

    def __init__(self, script, n_vocab, n_ctx=64):
        self.script, self.n_vocab, self.n_ctx = list(script), n_vocab, n_ctx
        self.n_past = 0
        self.evals = []

    def reset(self):
        self.n_past = 0

    def eval(self, ids, all_logits):
        assert not all_logits
        if self.n_past + len(ids) > self.n_ctx:
            raise _core.ContextFullError("full")
        self.evals.append(list(ids))
        self.n_past += len(ids)
        step = len(self.evals) - 1
        out = np.zeros(self.n_vocab, np.float32)
        out[self.script[step] if step < len(self.script) else EOS] = 10.0
        return out


def make(text_tokens, extra_eos=True, n_ctx=64):
    """Vocabulary: id 0 = EOS, then one id per distinct byte string in text_tokens."""
    pieces = [b""]
    ids = []
    for t in text_tokens:
        b = t if isinstance(t, bytes) else t.encode("utf-8")
        if b not in pieces:
            pieces.append(b)
        ids.append(pieces.index(b))
    if extra_eos:
        ids.append(EOS)
    return ScriptedCore(ids, len(pieces), n_ctx), ScriptedTokenizer(pieces)


def run(core, tok, max_new=None, stop=None, ignore_eos=False, prompt=(5, 6)):
    stats = GenerationStats()
    sampler = _core.Sampler(temperature=0.0)
    pieces = list(run_generation(core, tok, sampler, list(prompt), max_new, stop, ignore_eos, stats))
    return pieces, stats


def test_plain_until_eos():
    core, tok = make([" Paris", ".", "\n"])
    pieces, st = run(core, tok)
    assert "".join(pieces) == " Paris.\n"
    assert st.finish_reason == "stop" and st.generated_tokens == 3 and st.prompt_tokens == 2
    assert core.evals[0] == [5, 6]          # prompt in one eval, then one token per step
    assert all(len(e) == 1 for e in core.evals[1:])


def test_max_new_tokens_and_no_extra_eval():
    core, tok = make(["a", "b", "c", "d"])
    pieces, st = run(core, tok, max_new=2)
    assert "".join(pieces) == "ab" and st.finish_reason == "length"
    assert len(core.evals) == 2              # the prompt + one step; the last token is not evaluated


def test_stop_string_across_token_boundaries():
    core, tok = make([" The", " ans", "w", "er is", " 42"])
    pieces, st = run(core, tok, stop=["answer"])
    assert "".join(pieces) == " The "
    assert st.finish_reason == "stop"
    # the held-back prefix "ans" was never yielded
    assert not any("ans" in p for p in pieces)


def test_stop_string_partial_match_released():
    core, tok = make(["x", "an", "t", "y"])          # "an" could start "answer" but does not
    pieces, st = run(core, tok, stop=["answer"])
    assert "".join(pieces) == "xanty" and st.finish_reason == "stop"   # ended by EOS


def test_earliest_of_several_stops_wins():
    core, tok = make(["a", "bc", "de", "f"])
    pieces, _ = run(core, tok, stop=["def", "cd"])
    assert "".join(pieces) == "ab"


def test_stop_held_text_flushed_at_end():
    core, tok = make(["hello", " wor"])                 # " wor" could start " world": held, then flushed
    pieces, st = run(core, tok, stop=[" world"])
    assert "".join(pieces) == "hello wor"


def test_multibyte_characters_never_split():
    text = "naïve 日本語 🤖!"
    raw = text.encode("utf-8")
    tokens = [raw[i:i + 1] for i in range(len(raw))]     # byte tokens, like byte fallback / byte-level BPE
    core, tok = make(tokens)
    pieces, _ = run(core, tok)
    assert "".join(pieces) == text
    for p in pieces:
        p.encode("utf-8")                                 # each piece is complete text
        assert "\ufffd" not in p
    assert "🤖" in pieces                                # the 4-byte emoji comes out whole, once


def test_invalid_utf8_becomes_replacement_char_at_end():
    core, tok = make([b"ok", b"\xe6\x97"])                # truncated 3-byte sequence, then EOS
    pieces, _ = run(core, tok)
    assert "".join(pieces) == "ok\ufffd"


def test_token_limit_inside_a_character_ends_on_the_last_whole_one():
    for n, want in ((1, "ok "), (2, "ok 日"), (3, "ok 日")):
        core, tok = make([b"ok \xe6", b"\x97\xa5", b"\xe6\x97", b"\xa5"])   # 日 split twice
        pieces, st = run(core, tok, max_new=n)
        assert "".join(pieces) == want and st.finish_reason == "length"


def test_stop_string_with_multibyte():
    core, tok = make([b"\xe6", b"\x97\xa5", "本", "語"])
    pieces, _ = run(core, tok, stop=["本語"])
    assert "".join(pieces) == "日"


def test_ignore_eos_and_full_context():
    core, tok = make(["a"], extra_eos=True, n_ctx=6)
    pieces, st = run(core, tok, ignore_eos=True)          # EOS renders as "" and is kept going
    assert st.finish_reason == "length"
    assert core.n_past == 6 and st.generated_tokens == 5   # prompt 2 + 4 evaluated, the 5th sampled last


def test_stats_recorded_when_consumer_stops_early():
    core, tok = make(["a", "b", "c"])
    st = GenerationStats()
    it = run_generation(core, tok, _core.Sampler(temperature=0), [1], None, None, False, st)
    assert next(it) == "a"
    it.close()
    assert st.generated_tokens == 1 and st.finish_reason == "interrupted"


def test_stop_matcher_and_utf8_units():
    m = StopMatcher(["</s>", "\n\n"])
    assert m.feed("abc<") == ("abc", False)
    assert m.feed("/") == ("", False)
    assert m.feed("x") == ("</x", False)
    assert m.feed("\n") == ("", False)
    assert m.feed("\nrest") == ("", True)
    assert m.stopped_on == "\n\n"
    u = Utf8Stream()
    assert u.feed("é".encode()[:1]) == "" and u.feed("é".encode()[1:]) == "é"
    assert u.feed(b"\xf0\x9f") == "" and u.flush() == "\ufffd"
