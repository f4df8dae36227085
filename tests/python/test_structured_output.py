"""Structured output through the model API: response_format / json_schema / grammar constrain
sampling so that every output parses with json.loads and validates with `jsonschema`.

200 samples at temperature 1 per schema: the real SmolLM2 (byte-level BPE, 49152 tokens) through
create_chat_completion, and tiny random-weight Llama models with a SentencePiece vocabulary (byte
fallback <0xNN> tokens) and with a byte-level BPE vocabulary (multi-byte tokens, tokens that are
parts of UTF-8 characters), which decode fast. Every schema bounds its strings and arrays, so a
complete document always fits max_tokens and every output must finish with "stop"."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from ggmlpy import Model, _core
from ggmlpy.json_schema import JSON_OBJECT_GRAMMAR, schema_to_gbnf

jsonschema = pytest.importorskip("jsonschema")
sys.path.insert(0, str(Path(__file__).parent))

N_SAMPLES = int(os.environ.get("GGMLPY_STRUCTURED_SAMPLES", "200"))   # per schema; lower for a quick run

FLAT = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 24},
    "age": {"type": "integer"},
    "student": {"type": "boolean"},
    "city": {"enum": ["Paris", "Berlin", "Tokyo", "Lima"]}},
    "required": ["name", "age", "student", "city"]}

NESTED = {"type": "object", "properties": {
    "id": {"type": "integer"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
    "owner": {"type": "object", "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 6},
        "score": {"type": "number"},
        "nick": {"type": ["string", "null"], "maxLength": 4}},
        "required": ["name"], "additionalProperties": False},
    "points": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
        "type": "object", "properties": {"k": {"enum": ["x", "y", 1, None]}, "v": {"type": "boolean"}},
        "required": ["k", "v"]}}},
    "required": ["id", "tags", "owner", "points"]}

ESCAPES = {"type": "object", "properties": {
    "text": {"type": "string", "minLength": 3, "maxLength": 10},
    "quote": {"const": "say \"hi\"\n\\ \u00e9"},
    "choice": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}]}},
    "required": ["text", "quote", "choice"]}

# multi-byte tokens for the BPE vocabulary: JSON punctuation, escapes, and UTF-8 pieces that end
# in the middle of a character (b"\xe4\xb8" is the first two bytes of 中)
BPE_PIECES = [b'{"', b'":', b'": ', b'",', b'", "', b' "', b'"}', b'"]', b'\\"', b'\\n', b'\\u00', b'\\\\',
              b"true", b"false", b"null", b"12", b"0.", b"e+", b"[{", b"},", b"}]", b"\xe4\xb8", b"\xe4\xb8\xad",
              b"\xc3\xa9", b"\xa9\"", b"  ", b"\n  ", b"name", b"id", b"tags", b"owner"]


@pytest.fixture(scope="module")
def smol(smollm2_path):
    m = Model(smollm2_path, n_ctx=512, n_threads=2)
    yield m
    m.close()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    gt = pytest.importorskip("gguf_tiny")
    d = tmp_path_factory.mktemp("structured")
    spm = gt.write_llama_gguf(gt.make_llama(vocab=320, max_pos=2048, seed=3), d / "spm.gguf")
    bpe = gt.write_llama_gguf(gt.make_llama(vocab=400, max_pos=2048, seed=4), d / "bpe.gguf",
                              bpe_pieces=BPE_PIECES)
    models = {"spm": Model(spm, n_ctx=1024, n_threads=1), "bpe": Model(bpe, n_ctx=1024, n_threads=1)}
    yield models
    for m in models.values():
        m.close()


def check_outputs(texts, schema):
    for t in texts:
        value = json.loads(t)
        if schema is not None:
            jsonschema.validate(value, schema)
        else:
            assert isinstance(value, dict)


def test_tiny_vocabularies_are_what_the_tests_claim(tiny_models):
    spm, bpe = tiny_models["spm"].tokenizer, tiny_models["bpe"].tokenizer
    assert spm.model == "llama" and spm.token_to_piece(3 + 0x7B) == b"{"   # <0x7B> byte fallback
    assert bpe.model == "gpt2"
    pieces = {bpe.token_to_piece(i) for i in range(len(bpe))}
    assert b"\xe4\xb8" in pieces and b'{"' in pieces and b'\\"' in pieces


@pytest.mark.parametrize("kind", ["spm", "bpe"])
@pytest.mark.parametrize("name,schema", [("nested", NESTED), ("escapes", ESCAPES)])
def test_tiny_models_200_samples_validate(tiny_models, kind, name, schema):
    m = tiny_models[kind]
    texts, reasons = [], set()
    for seed in range(N_SAMPLES):
        texts.append(m.generate("{", max_new_tokens=900, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                                seed=seed, json_schema=schema))
        reasons.add(m.last_stats.finish_reason)
    assert reasons == {"stop"}
    check_outputs(texts, schema)
    if name == "escapes" and N_SAMPLES >= 200:   # the random model writes escapes in "text" (5 and 23
        # of 200 here), so escapes were generated, not only the const's
        assert any(set(json.loads(t)["text"]) & set('"\\/\b\f\n\r\t') for t in texts)


def test_smollm2_flat_schema_200_samples(smol):
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": FLAT, "strict": True}}
    msgs = [{"role": "system", "content": "Answer in JSON."},   # short: the prompt is evaluated 200 times
            {"role": "user", "content": "Describe a fictional person."}]
    texts = []
    for seed in range(N_SAMPLES):
        r = smol.create_chat_completion(msgs, response_format=rf, temperature=1.0, max_tokens=100, seed=seed)
        assert r["choices"][0]["finish_reason"] == "stop"
        texts.append(r["choices"][0]["message"]["content"])
    check_outputs(texts, FLAT)
    assert len(set(texts)) > N_SAMPLES // 2   # sampled, not one greedy answer


def test_smollm2_json_object_200_samples(smol):
    """json_object has no schema, so nothing bounds the document: a model may loop inside it until
    max_tokens ("length", a cut document). Every finished output parses as an object; a cut one is
    a prefix the grammar accepts; runaways must stay rare."""
    msgs = [{"role": "system", "content": "You answer with one short JSON object on one line and nothing else."},
            {"role": "user", "content": 'Paris is the capital of France. Give the city and the country as '
                                        'JSON, like {"city": "...", "country": "..."}.'}]
    auto = _core.GrammarAutomaton(_core.Grammar(JSON_OBJECT_GRAMMAR))
    done, cut = [], []
    for seed in range(N_SAMPLES):
        r = smol.create_chat_completion(msgs, response_format={"type": "json_object"}, temperature=1.0,
                                        max_tokens=160, seed=seed)
        c = r["choices"][0]
        (done if c["finish_reason"] == "stop" else cut).append(c["message"]["content"])
    check_outputs(done, None)
    for t in cut:
        assert _core.GrammarMatcher(auto).accept_bytes(t.encode())
    assert len(cut) <= N_SAMPLES // 50


def test_length_cut_and_done_stop(tiny_models):
    m = tiny_models["bpe"]
    g = schema_to_gbnf(NESTED)
    auto = _core.GrammarAutomaton(_core.Grammar(g))
    text = m.generate("{", max_new_tokens=5, temperature=1.0, seed=1, grammar=g)
    assert m.last_stats.finish_reason == "length" and m.last_stats.generated_tokens == 5
    assert _core.GrammarMatcher(auto).accept_bytes(text.encode())   # a valid prefix, cut
    # a grammar with nothing after its end stops without waiting for EOS
    text = m.generate("{", max_new_tokens=50, temperature=1.0, seed=2, grammar='root ::= "ab" [0-9]{3}')
    assert m.last_stats.finish_reason == "stop" and len(text) == 5 and text.startswith("ab")


def test_grammar_stream_and_completion_api(tiny_models):
    m = tiny_models["spm"]
    g = 'root ::= "<" item ("," item){1,3} ">"\nitem ::= [a-d]{1,3} | "é"'
    import re
    rx = re.compile(r"<(?:[a-d]{1,3}|é)(?:,(?:[a-d]{1,3}|é)){1,3}>")
    for seed in range(20):
        pieces = list(m.generate("a", max_new_tokens=40, temperature=1.0, seed=seed, grammar=g, stream=True))
        assert rx.fullmatch("".join(pieces)), pieces
    r = m.create_completion("a", max_tokens=40, temperature=1.0, seed=3, grammar=g)
    assert rx.fullmatch(r["choices"][0]["text"]) and r["choices"][0]["finish_reason"] == "stop"
    r = m.create_completion("a", max_tokens=200, temperature=1.0, seed=3,
                            response_format={"type": "json_schema", "schema": FLAT})
    jsonschema.validate(json.loads(r["choices"][0]["text"]), FLAT)
    chunks = list(m.create_completion("a", max_tokens=200, temperature=1.0, seed=4, stream=True,
                                      response_format={"type": "json_schema", "schema": FLAT}))
    jsonschema.validate(json.loads("".join(c["choices"][0]["text"] for c in chunks)), FLAT)


def test_special_tokens_never_inside_json(smol):
    """SmolLM2's control tokens (<|im_start|>, <|endoftext|>, ...) are never allowed by a grammar;
    EOS/EOG only once the document is complete."""
    tok = smol.tokenizer
    vocab = _core.GrammarVocab(tok)
    auto = _core.GrammarAutomaton(_core.Grammar(JSON_OBJECT_GRAMMAR), vocab)
    special = [i for i in range(len(tok)) if tok.token_to_piece(i, render_special=True).startswith(b"<|")]
    assert len(special) >= 3
    for prefix, complete in [(b"", False), (b'{"a": "', False), (b'{"a": 1}', True)]:
        mt = _core.GrammarMatcher(auto)
        assert mt.accept_bytes(prefix)
        logits = np.zeros(smol.n_vocab, np.float32)
        assert mt.apply_mask(logits) > 0
        eog_allowed = {i for i in special if np.isfinite(logits[i])}
        assert eog_allowed == ({i for i in special if tok.is_eog(i)} if complete else set())


def test_bad_arguments(smol):
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match="unsupported keyword 'pattern'"):
        smol.create_chat_completion(msgs, response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "string", "pattern": "a+"}}})
    with pytest.raises(ValueError, match="either response_format"):
        smol.create_chat_completion(msgs, response_format={"type": "json_object"}, grammar='root ::= "a"')
    with pytest.raises(TypeError, match="response_format must be a dict"):
        smol.create_completion("hi", response_format="json")
    with pytest.raises(ValueError, match="either grammar or json_schema"):
        smol.generate("hi", grammar='root ::= "a"', json_schema={"type": "string"})
    with pytest.raises(ValueError, match=r"line 1, column 10 \(rule 'root'\)"):
        smol.generate("hi", grammar='root ::= [a-')
    with pytest.raises(TypeError, match="grammar must be a str"):
        smol.generate("hi", grammar=42)
    # the model stays usable
    assert smol.generate("hi", max_new_tokens=3, grammar='root ::= "ok"', temperature=0) == "ok"


def test_interleaved_constrained_generators(tiny_models):
    """Two streaming generators on one Model share the cached automaton (and the KV cache): each
    still yields exactly its own valid document, the one it gives alone."""
    m = tiny_models["bpe"]
    kw = dict(max_new_tokens=900, temperature=1.0, json_schema=NESTED, stream=True)
    alone = ["".join(m.generate("{", seed=s, **kw)) for s in (11, 12)]
    a, b = m.generate("{", seed=11, **kw), m.generate("{", seed=12, **kw)
    out = [[], []]
    live = [a, b]
    while any(g is not None for g in live):
        for i, g in enumerate(live):
            if g is not None:
                piece = next(g, None)
                if piece is None:
                    live[i] = None
                else:
                    out[i].append(piece)
    assert ["".join(o) for o in out] == alone
    for t in alone:
        jsonschema.validate(json.loads(t), NESTED)
