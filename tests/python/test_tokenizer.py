"""Tokenizer exactness against independent references, offline:
- SmolLM2's reference ids (tests/data/smollm2-reference.json, from HF transformers);
- HF `tokenizers` built from the GGUF vocabulary with SmolLM2's pre-tokenizer/decoder, on a few
  thousand generated strings (random unicode, combining marks, code, whitespace runs, emoji and ZWJ
  sequences, CJK, digit runs, contractions, mixed scripts);
- HF `tokenizers` pre_tokenizers (Split with the GPT-2 / Llama 3 / Qwen2 regexes) against ours;
- a SentencePiece BPE model with byte fallback trained here with `sentencepiece`, against
  sentencepiece's own ids;
plus round trips, per-token streaming bytes, special tokens and bad input."""
import codecs
import random
import unicodedata

import pytest

from ggmlpy import _core
from ggmlpy._vocab import tokenizer_from_gguf, vocab_fields

N_STRINGS = 3000

# ---- generated strings -------------------------------------------------------------------------

_WORDS = ["hello", "World", "the", "QUICK", "brown", "fox", "don", "it", "we", "they", "I", "café",
          "naïve", "Straße", "über", "año", "jalapeño", "cooperate", "e-mail", "x", "a", "foo_bar",
          "CamelCase", "snake_case", "HTTPServer", "iPhone", "O'Neil"]
_CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re", "'VE", "'M", "'D",
                 "'T", "'", "''", "'x", "'ſ", "'rE"]
_SPACES = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n ", " \t ", "\r",
           "\u00a0", "\u3000", "\u2009", "\u2028", "\x0b", "\x0c", "\x85", " \n\n  ", "        "]
_PUNCT = list("!?.,;:()[]{}<>@#$%^&*-_=+|\\/~`\"'") + ["...", "--", "->", "=>", "!=", "==", "**",
                                                       "//", "/*", "*/", "«", "»", "“", "”", "—", "…", "¿", "¡", "§", "©", "€", "£", "¥"]
_CODE = ["def f(x):\n    return x**2", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
         "if x != y: print('a', \"b\")", "#include <stdio.h>", "const auto& [k, v] = *it;",
         "SELECT * FROM t WHERE id=42;", "<div class=\"x\">&nbsp;</div>", "x = [1,2,3]  # comment",
         "fn main() -> Result<(), Box<dyn Error>> {", "    \n    pass\n", "$ echo $HOME | grep -v 'x'",
         "a\tb\tc\n1\t2\t3", "{\"key\": [true, null, 1.5e-3]}", "λx.x+1", "0x1F, 0b1010, 1_000_000"]
_EMOJI = ["🤖", "😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳\ufe0f\u200d🌈", "🇫🇷", "1\ufe0f\u20e3", "❤️",
          "🧑🏿\u200d💻", "🙂🙃", "✨", "☃"]
_SCRIPTS = ["日本語", "中文字符测试", "한국어", "ひらがな", "カタカナ", "привет", "Ελληνικά λόγος", "مرحبا",
            "שלום", "नमस्ते", "สวัสดี", "ქართული", "Հայերեն", "ᚠᚢᚦ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ＦＵＬＬ"]
_COMBINING = ["e\u0301", "a\u0308\u0304", "Z\u0334\u0321\u0322\u0355", "n\u0303", "\u0301", "o\u20dd",
              "\u05e9\u05c1", "\u0915\u094d\u0937"]
_DIGITS = ["0", "7", "42", "123", "2024", "3.14159", "1,000,000", "٣٤٥", "１２３", "²", "Ⅻ", "½",
           "०१२", "00000000000", "9" * 13]


def _random_cp(rng):
    """A random assigned code point (by this Python's Unicode database), no surrogates."""
    while True:
        r = rng.random()
        if r < 0.5:
            cp = rng.randrange(0x20, 0x800)
        elif r < 0.85:
            cp = rng.randrange(0x800, 0x10000)
        else:
            cp = rng.randrange(0x10000, 0x30000)
        if 0xD800 <= cp < 0xE000:
            continue
        if unicodedata.category(chr(cp)) in ("Cn", "Cs"):
            continue
        return chr(cp)


def _piece(rng, random_cps=True):
    k = rng.random()
    if k < 0.16:
        w = rng.choice(_WORDS)
        return rng.choice([w, w.upper(), w.capitalize()])
    if k < 0.24:
        return rng.choice(_WORDS) + rng.choice(_CONTRACTIONS)
    if k < 0.36:
        return rng.choice(_SPACES)
    if k < 0.44:
        return "".join(rng.choice(_PUNCT) for _ in range(rng.randint(1, 3)))
    if k < 0.52:
        return rng.choice(_CODE)
    if k < 0.59:
        return rng.choice(_EMOJI)
    if k < 0.67:
        return rng.choice(_SCRIPTS)
    if k < 0.72:
        return rng.choice(_WORDS) + rng.choice(_COMBINING)
    if k < 0.80:
        d = rng.choice(_DIGITS)
        return d if rng.random() < 0.5 else "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 15)))
    if not random_cps:
        return rng.choice(_WORDS)
    return "".join(_random_cp(rng) for _ in range(rng.randint(1, 6)))


def generated_strings(n=N_STRINGS, seed=1234, random_cps=True):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [_piece(rng, random_cps) for _ in range(rng.randint(1, 10))]
        sep = rng.choice(["", " ", "", "\n", " "])
        out.append(sep.join(parts))
    return out


STRINGS = generated_strings()

# ---- SmolLM2 (byte-level BPE, pre "smollm") ----------------------------------------------------


@pytest.fixture(scope="module")
def smol_fields(smollm2_path):
    import gguf

    return vocab_fields(gguf.GGUFReader(str(smollm2_path)))


@pytest.fixture(scope="module")
def smol(smol_fields):
    return _core.Tokenizer(**smol_fields)


@pytest.fixture(scope="module")
def hf_smol(smol_fields):
    """HF tokenizers built offline from the GGUF vocabulary, configured like SmolLM2's
    tokenizer.json: BPE model, pre-tokenizer Sequence[Digits(individual_digits=True),
    ByteLevel(add_prefix_space=False, use_regex=True)], ByteLevel decoder, control tokens added
    as special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens = smol_fields["tokens"]
    assert len(set(tokens)) == len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in smol_fields["merges"]]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tk.decoder = decoders.ByteLevel()
    specials = [t for t, ty in zip(tokens, smol_fields["token_types"]) if ty == 3]
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tk


def test_smollm2_reference_ids(smol, smollm2_reference, hf_smol):
    cases = [(c["text"], c["ids"]) for c in smollm2_reference["tokenizer_cases"]]
    cases += [(p["text"], p["ids"]) for p in smollm2_reference["prompts"]]
    assert len(cases) == 7
    for text, ids in cases:
        assert smol.encode(text) == ids, text
        # the offline HF build must agree with the reference too, or comparing with it means nothing
        assert hf_smol.encode(text, add_special_tokens=False).ids == ids, text
        assert smol.decode(ids) == text
    for p in smollm2_reference["prompts"]:
        g = p["greedy"]
        assert smol.decode(g["new_ids"], render_special=True) == g["text"]
        assert [smol.token_to_piece(i, render_special=True).decode("utf-8") for i in g["new_ids"]] == \
            [t.replace("Ġ", " ").replace("Ċ", "\n") for t in g["tokens"]]


def test_smollm2_from_gguf_matches_python_path(smol, smollm2_path):
    t = _core.Tokenizer.from_gguf(str(smollm2_path))
    assert (t.n_vocab, t.bos, t.eos, t.add_bos, t.model, t.pre) == (49152, 1, 2, False, "gpt2", "smollm")
    for s in STRINGS[:300]:
        assert t.encode(s) == smol.encode(s)


def test_smollm2_vs_hf_tokenizers(smol, hf_smol):
    mismatches = []
    for s in STRINGS:
        ours = smol.encode(s, add_bos=False)
        ref = hf_smol.encode(s, add_special_tokens=False).ids
        if ours != ref:
            mismatches.append((s, ours, ref))
    assert not mismatches, f"{len(mismatches)}/{len(STRINGS)} differ, first: {mismatches[:3]}"


def test_smollm2_special_tokens(smol, hf_smol):
    texts = ["<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
             "a<|endoftext|>b", "<|im_start|><|im_start|>", "<|im_start", "x<file_sep>y <gh_stars>10"]
    for s in texts:
        assert smol.encode(s) == hf_smol.encode(s, add_special_tokens=False).ids, s
    # without parse_special the markup is plain text
    ids = smol.encode("<|im_start|>", parse_special=False)
    assert 1 not in ids and smol.decode(ids) == "<|im_start|>"
    # control tokens render only on request; BOS/EOS from metadata; add_bos overridable
    assert smol.token_to_piece(2) == b"" and smol.token_to_piece(2, render_special=True) == b"<|im_end|>"
    assert smol.encode("Hi", add_bos=True)[0] == smol.bos == 1
    assert smol.encode("Hi") == smol.encode("Hi", add_bos=False)  # metadata: add_bos_token false
    assert smol.is_eog(smol.eos) and smol.is_eog(0) and not smol.is_eog(1) and not smol.is_eog(504)


def test_smollm2_roundtrip_and_streaming(smol, hf_smol):
    for s in STRINGS:
        ids = smol.encode(s)
        assert smol.decode(ids) == s
        assert hf_smol.decode(ids) == s
        # streaming: per-token raw bytes concatenate to the text; an incremental UTF-8 decoder
        # (what a streamer does with incomplete sequences) never sees an invalid sequence
        pieces = [smol.token_to_piece(i) for i in ids]
        assert b"".join(pieces) == s.encode("utf-8")
        dec = codecs.getincrementaldecoder("utf-8")(errors="strict")
        assert "".join(dec.decode(p) for p in pieces) + dec.decode(b"", final=True) == s


# ---- pre-tokenizers vs HF pre_tokenizers -------------------------------------------------------

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")


def _hf_pre(kind):
    from tokenizers import Regex, pre_tokenizers

    split = lambda pat: pre_tokenizers.Split(Regex(pat), behavior="isolated", invert=False)  # noqa: E731
    if kind == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), split(GPT2_PATTERN)])
    return split({"gpt2": GPT2_PATTERN, "llama-bpe": LLAMA3_PATTERN, "qwen2": QWEN2_PATTERN}[kind])


@pytest.mark.parametrize("pre", ["gpt2", "llama-bpe", "qwen2", "smollm"])
def test_pretokenizer_vs_hf(pre):
    hf = _hf_pre(pre)
    bad = []
    for s in STRINGS:
        ours = _core.pretokenize(pre, s)
        ref = [p for p, _ in hf.pre_tokenize_str(s)]
        if ours != ref:
            bad.append((s, ours, ref))
    assert not bad, f"{pre}: {len(bad)}/{len(STRINGS)} differ, first: {bad[:2]}"


def test_pretokenizer_edge_cases():
    hf = {k: _hf_pre(k) for k in ("gpt2", "llama-bpe", "smollm")}
    edge = ["", " ", "  ", "a  b", "a \tb", "\n\n\nx", "  \n  \ny", "x   ", "'s's", "''s", "I'M", "X'LL",
            " 123456", "1234567", "a1b2", "hello\r\n\r\nworld", "\t\tx", " ?!x", "...\n\nok", "é\u0301x"]
    for s in edge:
        for k, h in hf.items():
            assert _core.pretokenize(k, s) == [p for p, _ in h.pre_tokenize_str(s)], (k, s)


# ---- byte-level BPE vocabularies trained here, per pre-tokenizer ------------------------------


def _bytes_to_unicode():
    """GPT-2's byte -> printable character table (written out here, independently of ours)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


@pytest.mark.parametrize("pre", ["gpt2", "llama-bpe", "qwen2"])
def test_trained_bpe_vs_hf(pre):
    """A byte-level BPE vocabulary trained here with HF's BpeTrainer behind the named
    pre-tokenizer (Llama 3 style: Split(pattern) + ByteLevel(use_regex=False)), plus a few whole
    words added as tokens without merges (reachable only through ignore_merges, which Llama 3's
    tokenizer.json sets and llama-bpe implies); HF's ids vs ours."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def hf_with(model):
        tk = Tokenizer(model)
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            _hf_pre(pre), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tk.decoder = decoders.ByteLevel()
        return tk

    base = hf_with(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=3000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|begin_of_text|>", "<|eot_id|>"], show_progress=False)
    base.train_from_iterator(generated_strings(3000, seed=7), trainer=trainer)
    model = json.loads(base.to_str())["model"]
    vocab = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    # extra tokens: the 40 most frequent pre-tokens of the test strings that are not tokens yet
    b2u = _bytes_to_unicode()
    counts = {}
    for s in STRINGS:
        for p, _ in _hf_pre(pre).pre_tokenize_str(s):
            w = "".join(b2u[b] for b in p.encode())
            if len(p) >= 3 and w not in vocab:
                counts[w] = counts.get(w, 0) + 1
    extra = sorted(counts, key=lambda w: (-counts[w], w))[:40]
    assert len(extra) == 40
    for w in extra:
        vocab[w] = len(vocab)
    ignore_merges = pre == "llama-bpe"
    tk = hf_with(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
    tk.add_special_tokens(["<|begin_of_text|>", "<|eot_id|>"])

    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    types = [3 if t in ("<|begin_of_text|>", "<|eot_id|>") else 1 for t in tokens]
    ours = _core.Tokenizer(model="gpt2", pre=pre, tokens=tokens, merges=[f"{a} {b}" for a, b in merges],
                           token_types=types, bos=vocab["<|begin_of_text|>"], eos=vocab["<|eot_id|>"],
                           add_bos=True, add_space_prefix=False)
    bad, n_extra = [], 0
    extra_ids = {vocab[w] for w in extra}
    for s in STRINGS:
        ref = tk.encode(s, add_special_tokens=False).ids
        n_extra += bool(extra_ids.intersection(ref))
        if ours.encode(s, add_bos=False) != ref:
            bad.append(s)
    assert not bad, f"{pre}: {len(bad)}/{len(STRINGS)} differ, first: {bad[:2]}"
    # the whole-word tokens are used exactly when merges are ignored
    assert (n_extra > 20) if ignore_merges else (n_extra == 0)
    for s in STRINGS[:500]:
        assert ours.decode(ours.encode(s)) == s
    assert ours.encode("hi")[0] == ours.bos and ours.is_eog(ours.eos)


# ---- SentencePiece (tokenizer.ggml.model = "llama") --------------------------------------------

USER_SYMBOLS = ["<tool>", "[SEP]"]


@pytest.fixture(scope="module", params=[True, False], ids=["byte_fallback", "unk"])
def spm_pair(request, tmp_path_factory):
    """A BPE SentencePiece model trained here the way Llama's was (identity normalization, no
    whitespace collapsing, dummy prefix, split digits, byte fallback; and once without byte
    fallback, where unknown characters become <unk>), and our tokenizer built from its pieces,
    scores and types."""
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("spm")
    corpus = generated_strings(4000, seed=99, random_cps=False) + [
        "The quick brown fox jumps over the lazy dog. " * 3,
        "Once upon a time, there was a little girl who lived in a village near the forest.",
    ] * 20
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([c.replace("\n", " ") for c in corpus if c.strip()]),
        model_prefix=str(d / "m"), vocab_size=2000, model_type="bpe", byte_fallback=request.param,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        split_digits=True, allow_whitespace_only_pieces=True, character_coverage=0.99,
        user_defined_symbols=USER_SYMBOLS, num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(d / "m.model"))
    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    types = []
    for i in range(n):
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_byte(i):
            types.append(6)
        elif sp.is_unused(i):
            types.append(5)
        elif pieces[i] in USER_SYMBOLS:
            types.append(4)
        else:
            types.append(1)
    assert types.count(6) == (256 if request.param else 0) and types.count(4) == len(USER_SYMBOLS)
    ours = _core.Tokenizer(model="llama", tokens=pieces, scores=[sp.get_score(i) for i in range(n)],
                           token_types=types, bos=sp.bos_id(), eos=sp.eos_id(), unk=sp.unk_id(),
                           add_bos=True, add_space_prefix=True)
    return sp, ours


def test_spm_vs_sentencepiece(spm_pair):
    sp, ours = spm_pair
    bad = []
    n_fallback = 0
    for s in STRINGS:
        ref = sp.encode(s)
        got = ours.encode(s, add_bos=False, parse_special=False)
        n_fallback += any(sp.is_byte(i) or sp.is_unknown(i) for i in ref)
        if got != ref:
            bad.append((s, got, ref))
    assert not bad, f"{len(bad)}/{len(STRINGS)} differ, first: {bad[:2]}"
    assert n_fallback > 100  # the comparison exercised byte fallback / unknown pieces


def test_spm_roundtrip_streaming_bos(spm_pair):
    sp, ours = spm_pair
    for s in STRINGS:
        ids = ours.encode(s, parse_special=False)
        assert ids[0] == sp.bos_id()  # add_bos from the vocabulary
        ids = ids[1:]
        assert ours.decode(ids) == sp.decode(ids)
        if "\u2581" not in s and not any(sp.is_unknown(i) for i in ids):  # a literal "▁" decodes as a space in sentencepiece too
            assert ours.decode(ids) == s
            # per-token bytes: the text with the space prefix the encoder added
            assert b"".join(ours.token_to_piece(i) for i in ids) == (" " + s).encode("utf-8")
    assert ours.encode("", add_bos=False) == [] == sp.encode("")
    assert ours.encode("x <tool> y", add_bos=False, parse_special=False) == sp.encode("x <tool> y")


# ---- bad input ---------------------------------------------------------------------------------


def test_bad_vocab_raises():
    with pytest.raises(ValueError, match="tokenizer.ggml.model.*'wordpiece'"):
        _core.Tokenizer(model="wordpiece", tokens=["a"])
    with pytest.raises(ValueError, match="tokenizer.ggml.pre.*'nonesuch'"):
        _core.Tokenizer(model="gpt2", pre="nonesuch", tokens=["a"])
    with pytest.raises(ValueError, match="tokenizer.ggml.tokens"):
        _core.Tokenizer(model="gpt2", pre="gpt2", tokens=[])
    with pytest.raises(ValueError, match="tokenizer.ggml.scores"):
        _core.Tokenizer(model="llama", tokens=["a", "b"], scores=[0.0])
    with pytest.raises(ValueError, match="tokenizer.ggml.token_type"):
        _core.Tokenizer(model="llama", tokens=["a", "b"], scores=[0.0, 0.0], token_types=[1])
    with pytest.raises(ValueError, match=r"tokenizer.ggml.token_type\[1\]"):
        _core.Tokenizer(model="llama", tokens=["a", "b"], scores=[0.0, 0.0], token_types=[1, 9])
    with pytest.raises(ValueError, match="tokenizer.ggml.eos_token_id.*5"):
        _core.Tokenizer(model="llama", tokens=["a", "b"], scores=[0.0, 0.0], eos=5)
    with pytest.raises(ValueError, match=r"tokenizer.ggml.merges\[0\]"):
        _core.Tokenizer(model="gpt2", pre="gpt2", tokens=["a"], merges=["ab"])
    with pytest.raises(ValueError, match="tokenizer.ggml.pre"):
        _core.pretokenize("nonesuch", "x")


def test_bad_ids_raise(smol):
    with pytest.raises(ValueError, match="49152"):
        smol.token_to_piece(49152)
    with pytest.raises(ValueError, match="-3"):
        smol.decode([1, -3])


def test_from_gguf_errors(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        _core.Tokenizer.from_gguf(str(missing))
    import gguf

    path = tmp_path / "novocab.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_string("tokenizer.ggml.model", "llama")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="tokenizer.ggml.tokens"):
        _core.Tokenizer.from_gguf(str(path))
    with pytest.raises(ValueError, match="tokenizer.ggml.tokens"):
        tokenizer_from_gguf(path)


def test_bpe_without_merges_is_greedy_longest_match():
    # legacy ggml GPT-J vocabularies carry no merges: each word takes the longest token that
    # prefixes what is left of it (worked out by hand for this vocabulary)
    toks = [chr(c) for c in range(33, 127)] + ["Ġhe", "llo", "Ġhello", "Ġ", "he"]
    ids = {t: i for i, t in enumerate(toks)}
    t = _core.Tokenizer(model="gpt2", pre="gpt2", tokens=toks, merges=[])
    got = t.encode("hello hello world", add_bos=False)
    assert got == [ids["he"], ids["llo"], ids["Ġhello"], ids["Ġ"], ids["w"], ids["o"], ids["r"], ids["l"], ids["d"]]
    assert t.decode(got) == "hello hello world"
