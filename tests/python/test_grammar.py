"""The grammar engine (src/grammar/, _core.Grammar / GrammarVocab / GrammarAutomaton /
GrammarMatcher) and JSON Schema -> GBNF (json_schema.py), against independent checks:
- GBNF acceptance equals Python `re` on equivalent regular expressions, for random strings;
- random walks through the automaton (sentences the grammar generates byte by byte or over a
  multi-byte vocabulary) all parse with json.loads and validate with `jsonschema`;
- documents serialized by json.dumps from an independent random generator are all accepted;
- token masks equal a brute-force check of every token's bytes;
- bad grammars and schemas raise ValueError naming the rule / keyword and the position.
Generation through a model is in test_structured_output.py."""
import json
import random
import re
import zlib

import numpy as np
import pytest

from ggmlpy import _core
from ggmlpy.json_schema import JSON_OBJECT_GRAMMAR, response_format_grammar, schema_to_gbnf

jsonschema = pytest.importorskip("jsonschema")


def accepts(grammar, text):
    m = _core.GrammarMatcher(_core.GrammarAutomaton(_core.Grammar(grammar)))
    data = text.encode() if isinstance(text, str) else text
    return m.accept_bytes(data) and m.is_complete()


# ---- GBNF against Python re ------------------------------------------------------------------
REGULAR = [  # (GBNF, equivalent Python regex, a matching string to mutate)
    ('root ::= "ab" [c-e]* "f"', r"ab[c-e]*f", "abcdef"),
    ('root ::= ( "x" | "yz" )+ [^a-z]?', r"(?:x|yz)+[^a-z]?", "xyzx中"),
    ('root ::= [a-c]{2,4} d{0,2}\nd ::= "d" | "é"', r"[a-c]{2,4}(?:d|é){0,2}", "abcdé"),
    ('root ::= [a-c]{3} "x"{2,}', r"[a-c]{3}x{2,}", "abcxxx"),
    ('# comment\nroot ::= w ( " " w )*   # words\nw ::= [a-zé中]+', r"[a-zé中]+(?: [a-zé中]+)*", "ab 中é x"),
    ('root ::= . . "x"?', r"(?s:..x?)", "中\nx"),
    ('root ::= [^"\\\\\\n]* "\\""', r'[^"\\\n]*"', 'ab中"'),
    ('root ::= "\\x41\\u00e9\\U0001F600" [\\u4e00-\\u4e2d]', "A\u00e9\U0001F600[\u4e00-\u4e2d]",
     "A\u00e9\U0001F600\u4e01"),
    ('root ::= ("a" | "b" "c"? )* "d"\n', r"(?:a|bc?)*d", "abcbad"),
    ('root ::= [-a]+ [\\]\\-]', r"[-a]+[\]\-]", "-a-]"),
]
ALPHABET = ["a", "b", "c", "d", "e", "f", "x", "y", "z", " ", "é", "中", "\n", '"', "\\", "-", "]",
            "A", "\U0001F600", "\u4e01", "\u4e2e"]


def mutate(s, rng):
    s = list(s)
    for _ in range(rng.randrange(0, 3)):
        i = rng.randrange(len(s) + 1)
        op = rng.randrange(3)
        if op == 0 and s:
            del s[min(i, len(s) - 1)]
        elif op == 1:
            s.insert(i, rng.choice(ALPHABET))
        elif s:
            s[min(i, len(s) - 1)] = rng.choice(ALPHABET)
    return "".join(s)


@pytest.mark.parametrize("gbnf,regex,example", REGULAR)
def test_gbnf_matches_python_re(gbnf, regex, example):
    assert re.fullmatch(regex, example)
    rng = random.Random(zlib.crc32(gbnf.encode()))
    auto = _core.GrammarAutomaton(_core.Grammar(gbnf))   # one automaton: its caches are shared
    n_yes = n_no = 0
    for i in range(1500):
        if i % 2:
            s = mutate(example, rng)   # near misses and near matches
        else:
            s = "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 8)))
        m = _core.GrammarMatcher(auto)
        got = m.accept_bytes(s.encode()) and m.is_complete()
        want = re.fullmatch(regex, s) is not None
        assert got == want, (gbnf, s)
        n_yes += want
        n_no += not want
    assert n_yes > 20 and n_no > 20   # both outcomes were compared


def test_prefixes_and_partial_utf8():
    g = 'root ::= "é" [中-丁]'   # a range over 3-byte characters, reversed order raises (below)
    m = _core.GrammarMatcher(_core.GrammarAutomaton(_core.Grammar('root ::= "é" [一-中]')))
    data = "é中".encode()
    for b in data[:-1]:
        assert m.accept_bytes(bytes([b]))        # every byte of a character, one at a time
        assert not m.is_complete()
    assert not m.accept_bytes(b"\xff")           # rejected: state unchanged
    assert m.accept_bytes(data[-1:]) and m.is_complete() and m.is_done()
    with pytest.raises(ValueError, match="reversed"):
        _core.Grammar(g)


def test_classes_never_produce_invalid_utf8():
    # [^x] must not accept lone continuation bytes, overlong forms or surrogates
    for bad in (b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff"):
        assert not accepts('root ::= [^x]', bad), bad
    for good in ("y", "é", "\uffff", "\U0010FFFF", "\ud7ff", "\ue000"):
        assert accepts('root ::= [^x]', good), good


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,needle", [
    ('root ::= foo', r"line 1, column 10: rule 'foo' is used in rule 'root' but never defined"),
    ('root ::= "a"\nx ::= [', r"line 2, column 7 \(rule 'x'\): unterminated character class"),
    ('root ::= "abc', r"line 1, column 10 \(rule 'root'\): unterminated string literal"),
    ('root ::= ( "a" ', r"unclosed '\('"),
    ('root ::= "a" )', r"column 14.*'\)' without a matching '\('"),
    ('root ::= "\\q"', r"unknown escape '\\q'"),
    ('root ::= "\\ud800"', r"not a Unicode scalar value"),
    ('root ::= * "a"', r"'\*' has nothing before it to repeat"),
    ('root ::= "a"{3,2}', r"n < m"),
    ('root ::= "a"{99999}', r"repetition count larger than 10000"),
    ('root ::= "a"\nroot ::= "b"', r"line 2, column 1.*rule 'root' is defined twice"),
    ('root = "a"', r"expected '::=' after rule name 'root'"),
    ('x ::= "a"', r"no rule named 'root'"),
    ('', r"empty"),
    ('root ::= "a" root', r"rule 'root' can never complete"),
    ('root ::= a\na ::= "x" b\nb ::= "y" a', r"rule 'a', 'b' can never complete|rule 'root', 'a', 'b'"),
    ('root ::= [^\\x00-\\U0010FFFF]', r"can never complete"),
    ('root ::= root "a" | "b"', r"left recursion: 'root' -> 'root'"),
    ('root ::= a\na ::= b "x" | "y"\nb ::= c\nc ::= "z"? a', r"left recursion: 'a' -> 'b' -> 'c' -> 'a'"),
    ('root ::= ("a"?)*', r"left recursion: 'root#\d+' -> 'root#\d+'"),
    ('root ::= ' + "(" * 500 + '"a"' + ")" * 500, r"nested deeper than 100"),
    ('root ::= "' + "a" * 300 + '"{10000}', r"too large"),
    ('root ::= "a"{2}{3}', r"'\{' has nothing before it to repeat"),
])
def test_grammar_errors(text, needle):
    with pytest.raises(ValueError, match=needle):
        _core.Grammar(text)


def test_grammar_argument_types():
    with pytest.raises(TypeError):
        _core.Grammar(None)
    from ggmlpy.grammar import compile_grammar, grammar_text
    with pytest.raises(TypeError, match="grammar must be a str"):
        compile_grammar(b"root ::= x")
    with pytest.raises(ValueError, match="either grammar or json_schema"):
        grammar_text('root ::= "a"', {"type": "string"})
    g = _core.Grammar('root ::= "x" [a-c]* ("é" | "中")+', "root")
    assert g.n_rules >= 3 and "root" in g.rule_names
    with pytest.raises(ValueError, match="no rule named 'start'"):
        _core.Grammar('root ::= "a"', "start")


def test_ambiguity_is_bounded_not_a_hang():
    # 2^k parses of a string of a's: stacks are deduplicated, so this stays linear
    assert accepts('root ::= x*\nx ::= "a" | "a" "a" | "a" "a" "a"', "a" * 300)
    # deep nesting: stacks deeper than 2048 are cut, the rest works
    g = 'root ::= "[" root "]" | "x"'
    assert accepts(g, "[" * 100 + "x" + "]" * 100)
    assert not accepts(g, "[" * 3000 + "x" + "]" * 3000)


# ---- token masks against brute force ---------------------------------------------------------
def brute_allowed(grammar, prefix, pieces, eog):
    auto = _core.GrammarAutomaton(_core.Grammar(grammar))
    out = set()
    for t, p in enumerate(pieces):
        m = _core.GrammarMatcher(auto)
        assert m.accept_bytes(prefix)
        if t in eog:
            if m.is_complete():
                out.add(t)
        elif p and m.accept_bytes(p):
            out.add(t)
    return out


def test_mask_equals_brute_force():
    rng = random.Random(1)
    chars = b'{}[]",:ab \\nu01tre9-.\xc3\xa9\xe4\xb8\xad'
    pieces = [bytes([b]) for b in range(256)]
    pieces += [bytes(rng.choice(chars) for _ in range(rng.randrange(2, 6))) for _ in range(400)]
    pieces += [b"", b'{"', b'":', b'",', b"\xc3", b"\xa9\"", b"\xe4\xb8"]   # "" = never allowed
    eog = [len(pieces)]
    pieces.append(b"</s>")
    vocab = _core.GrammarVocab(pieces, eog)
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3},
                                               "b": {"type": "array", "items": {"type": "integer"}}},
              "required": ["a"]}
    g = schema_to_gbnf(schema)
    auto = _core.GrammarAutomaton(_core.Grammar(g), vocab)
    for prefix in [b"", b"{", b'{"a"', b'{"a": "\xc3', b'{"a":"x\\u00', b'{"a":"xyz"', b'{"a":"" , "b": [1',
                   b'{"a":"xyz"}']:
        m = _core.GrammarMatcher(auto)
        assert m.accept_bytes(prefix)
        logits = np.zeros(len(pieces), np.float32)
        n = m.apply_mask(logits)
        got = {int(t) for t in np.flatnonzero(np.isfinite(logits))}
        assert got == brute_allowed(g, prefix, pieces, eog), prefix
        assert n == len(got) > 0
        assert (eog[0] in got) == m.is_complete()
    with pytest.raises(TypeError, match="float32"):
        _core.GrammarMatcher(auto).apply_mask(np.zeros(len(pieces), np.float64))


# ---- JSON Schema: random walks through the automaton are valid documents -------------------------
SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6}, "age": {"type": "integer"},
                                      "ok": {"type": "boolean"}, "color": {"enum": ["red", "green", 3, None]}},
     "required": ["name", "age", "ok", "color"]},
    {"type": "object", "properties": {
        "id": {"type": "integer"}, "score": {"type": "number"}, "nick": {"type": ["string", "null"], "minLength": 2,
                                                                          "maxLength": 4},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "maxItems": 3},
        "owner": {"type": "object", "properties": {"n": {"const": "x\"y"}, "m": {"type": "null"}},
                  "required": ["m"], "additionalProperties": False}},
     "required": ["id", "tags"]},
    {"anyOf": [{"type": "integer"}, {"type": "array", "maxItems": 2, "items": {"$ref": "#/$defs/pt"}}],
     "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                      "required": ["x", "y"]}}},
    {"oneOf": [{"type": "string", "maxLength": 5}, {"type": "boolean"}, {"const": 1}]},
    {"type": "object", "additionalProperties": {"type": "integer"}, "title": "free keys"},
    {"$ref": "#/definitions/node", "definitions": {"node": {"type": "object", "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "maxItems": 2, "items": {"$ref": "#/definitions/node"}}},
        "required": ["v"]}}},
    {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 2}, "minItems": 2, "maxItems": 4},
    {"type": "object", "properties": {"s": {"type": "string", "maxLength": 4}}, "required": ["s"],
     "additionalProperties": False},
    {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 150},
                                      "t": {"type": "integer", "exclusiveMinimum": -3.5, "exclusiveMaximum": 10},
                                      "big": {"type": "integer", "minimum": 987}},
     "required": ["age", "t", "big"]},
]


def byte_vocab():
    pieces = [bytes([b]) for b in range(256)] + [b"</s>"]
    return _core.GrammarVocab(pieces, [256])


def random_walk(auto, rng, n_vocab, max_len=600):
    """A random sentence of the grammar: draws among allowed tokens (end with prob. 1/3 when
    allowed); None if it grows past max_len bytes."""
    m = _core.GrammarMatcher(auto)
    out = bytearray()
    logits = np.zeros(n_vocab, np.float32)
    while len(out) < max_len:
        logits[:] = 0
        m.apply_mask(logits)
        allowed = np.flatnonzero(np.isfinite(logits))
        if n_vocab - 1 in allowed and (len(allowed) == 1 or rng.random() < 1 / 3):
            assert m.accept_token(n_vocab - 1) and m.is_done()
            return bytes(out)
        t = int(rng.choice([a for a in allowed if a != n_vocab - 1]))
        assert m.accept_token(t)
        out += auto_piece(t)
    return None


def auto_piece(t):
    return bytes([t])


@pytest.mark.parametrize("k", range(len(SCHEMAS)))
def test_random_sentences_validate(k):
    schema = SCHEMAS[k]
    jsonschema.Draft202012Validator.check_schema(schema)
    auto = _core.GrammarAutomaton(_core.Grammar(schema_to_gbnf(schema)), byte_vocab())
    rng = random.Random(k)
    n_done = 0
    for _ in range(150):
        doc = random_walk(auto, rng, 257)
        if doc is None:
            continue
        value = json.loads(doc.decode("utf-8"))   # strict UTF-8 and strict JSON
        jsonschema.validate(value, schema)
        n_done += 1
    assert n_done >= 100


def random_value(schema, rng, root, depth=0):
    """An independent generator of valid values (for the schemas above), to check that the grammar
    accepts what json.dumps writes."""
    if "$ref" in schema:
        return random_value(root[schema["$ref"].split("/")[1]][schema["$ref"].split("/")[2]], rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for comb in ("anyOf", "oneOf"):
        if comb in schema:
            return random_value(rng.choice(schema[comb]), rng, root, depth)
    t = schema.get("type")
    t = rng.choice(t) if isinstance(t, list) else t
    if t == "integer":
        lo = schema.get("minimum", int(schema.get("exclusiveMinimum", -10**6 - 1) // 1) + 1)
        hi = schema.get("maximum", -int(-schema.get("exclusiveMaximum", 10**6 + 1) // 1) - 1)
        return rng.randrange(lo, hi + 1)
    if t == "number":
        return rng.choice([rng.uniform(-1e3, 1e3), rng.randrange(-99, 99), 1.5e-7])
    if t == "boolean":
        return rng.random() < 0.5
    if t == "null":
        return None
    if t == "string":
        n = rng.randrange(schema.get("minLength", 0), schema.get("maxLength", 8) + 1)
        return "".join(rng.choice('ab"\\\n\té中\U0001F600\x01/') for _ in range(n))
    if t == "array":
        lo, hi = schema.get("minItems", 0), schema.get("maxItems", 3)
        hi = min(hi, lo + 2) if depth > 3 else hi
        return [random_value(schema.get("items", {"type": "integer"}), rng, root, depth + 1)
                for _ in range(rng.randrange(lo, hi + 1 if depth < 4 else lo + 1))]
    if t == "object" or "properties" in schema or "additionalProperties" in schema:
        out = {}
        props = schema.get("properties", {})
        if not props and isinstance(schema.get("additionalProperties"), dict):
            return {f"k{i}": random_value(schema["additionalProperties"], rng, root, depth + 1)
                    for i in range(rng.randrange(0, 3))}
        for key, sub in props.items():
            if key in schema.get("required", []) or rng.random() < 0.5:
                out[key] = random_value(sub, rng, root, depth + 1)
        return out
    raise AssertionError(schema)


@pytest.mark.parametrize("k", range(len(SCHEMAS)))
def test_json_dumps_documents_are_accepted(k):
    schema = SCHEMAS[k]
    auto = _core.GrammarAutomaton(_core.Grammar(schema_to_gbnf(schema)))
    rng = random.Random(100 + k)
    for i in range(150):
        value = random_value(schema, rng, schema)
        jsonschema.validate(value, schema)   # the generator is right
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2]),
                          separators=rng.choice([None, (",", ":")]) if i % 3 else None)
        m = _core.GrammarMatcher(auto)
        assert m.accept_bytes(text.encode()) and m.is_complete(), text


def test_mutated_documents_are_valid_or_rejected():
    """Soundness on near-misses: random edits of valid documents are either rejected by the
    grammar or valid JSON under the schema."""
    rng = random.Random(7)
    for k, schema in enumerate(SCHEMAS):
        auto = _core.GrammarAutomaton(_core.Grammar(schema_to_gbnf(schema)))
        for _ in range(150):
            text = json.dumps(random_value(schema, rng, schema), ensure_ascii=False)
            s = list(text)
            for _ in range(rng.randrange(1, 3)):
                i = rng.randrange(len(s) + 1)
                op = rng.randrange(3)
                c = rng.choice('{}[]",:0-.e a\\"u')
                if op == 0 and s:
                    del s[min(i, len(s) - 1)]
                elif op == 1:
                    s.insert(i, c)
                elif s:
                    s[min(i, len(s) - 1)] = c
            cand = "".join(s)
            m = _core.GrammarMatcher(auto)
            if m.accept_bytes(cand.encode()) and m.is_complete():
                jsonschema.validate(json.loads(cand), schema)


def test_json_object_grammar_walks():
    auto = _core.GrammarAutomaton(_core.Grammar(JSON_OBJECT_GRAMMAR), byte_vocab())
    rng = random.Random(3)
    n = 0
    for _ in range(200):
        doc = random_walk(auto, rng, 257, max_len=300)
        if doc is not None:
            assert isinstance(json.loads(doc.decode()), dict)
            n += 1
    assert n >= 50


@pytest.mark.parametrize("lo,hi", [(0, None), (1, None), (None, 0), (None, -7), (-5, 5), (13, 117), (0, 0),
                                   (-100, -3), (99, 1000), (None, None), (-12345, None), (18, 150),
                                   (-987654, 123456), (31, 4999999)])
def test_integer_ranges_match_python_comparisons(lo, hi):
    from ggmlpy.json_schema import int_range_gbnf
    auto = _core.GrammarAutomaton(_core.Grammar("root ::= " + int_range_gbnf(lo, hi)))
    rng = random.Random(lo or 0)
    near = [x + d for x in (lo, hi) if x is not None for d in (-11, -10, -1, 0, 1, 10, 11)]
    for v in near + [rng.randrange(-10**7, 10**7) for _ in range(400)] + [rng.randrange(-999, 999) for _ in range(200)]:
        m = _core.GrammarMatcher(auto)
        got = m.accept_bytes(str(v).encode()) and m.is_complete()
        assert got == ((lo is None or v >= lo) and (hi is None or v <= hi)), v
    for bad in ["-0", "01", "00", "+1", "", "1.0", "1e2"]:
        m = _core.GrammarMatcher(auto)
        assert not (m.accept_bytes(bad.encode()) and m.is_complete()), bad


# ---- schema errors and response_format shapes --------------------------------------------------
@pytest.mark.parametrize("schema,exc,needle", [
    ({"type": "string", "pattern": "a+"}, ValueError, r"unsupported keyword 'pattern' at #"),
    ({"type": "string", "format": "date-time"}, ValueError, r"'format'"),
    ({"type": "number", "minimum": 0}, ValueError, r"'minimum' at # is supported for type integer only"),
    ({"type": "integer", "minimum": 5, "exclusiveMaximum": 5}, ValueError, r"leave no value \(5 > 4\)"),
    ({"type": "integer", "maximum": 10**20}, ValueError, r"beyond the 16 digits"),
    ({"type": "integer", "minimum": "3"}, ValueError, r"'minimum' at # must be a finite number"),
    ({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}}, ValueError,
     r"'uniqueItems' at #/properties/a"),
    ({"type": "object", "patternProperties": {}}, ValueError, r"'patternProperties'"),
    ({"not": {"type": "string"}}, ValueError, r"'not'"),
    ({"type": "strin"}, ValueError, r"unknown type 'strin'"),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, ValueError, r"oneOf.*may match the same value"),
    ({"allOf": [{"type": "integer"}, {"minimum": 1}]}, ValueError, r"allOf"),
    ({"$ref": "#/$defs/missing"}, ValueError, r"points to nothing"),
    ({"$ref": "http://x/y.json"}, ValueError, r"is not supported"),
    ({"type": "string", "maxLength": 2, "minLength": 3}, ValueError, r"no value is valid"),
    ({"type": "array", "maxItems": 10**6}, ValueError, r"larger than the 10000"),
    ({"type": "string", "maxLength": -1}, ValueError, r"'maxLength'.*int >= 0"),
    ({"enum": []}, ValueError, r"non-empty"),
    ({"type": "object", "required": ["a"], "additionalProperties": False}, ValueError, r"required property 'a'"),
    (False, ValueError, r"matches no value"),
    ({"type": "object", "properties": {"a": 3}}, TypeError, r"must be a dict or a bool"),
    ("{not json", ValueError, r"not valid JSON"),
    ({"$ref": "#/$defs/a", "$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}}, ValueError,
     r"left recursion"),
])
def test_schema_errors(schema, exc, needle):
    with pytest.raises(exc, match=needle):
        _core.Grammar(schema_to_gbnf(schema))


def test_response_format_shapes():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    g1 = response_format_grammar({"type": "json_schema", "json_schema": {"name": "x", "schema": schema,
                                                                         "strict": True}})
    assert g1 == response_format_grammar({"type": "json_schema", "schema": schema})
    assert g1 == response_format_grammar({"type": "json_object", "schema": schema}) == schema_to_gbnf(schema)
    assert response_format_grammar({"type": "json_object"}) == JSON_OBJECT_GRAMMAR
    assert response_format_grammar({"type": "text"}) is None and response_format_grammar(None) is None
    with pytest.raises(ValueError, match="expected 'text', 'json_object' or 'json_schema'"):
        response_format_grammar({"type": "xml"})
    with pytest.raises(ValueError, match="needs a schema"):
        response_format_grammar({"type": "json_schema", "json_schema": {"name": "x"}})
    with pytest.raises(TypeError, match="response_format must be a dict"):
        response_format_grammar("json")
    assert accepts(g1, '{"a": 12}') and not accepts(g1, '{"a": 1.5}') and not accepts(g1, '{}')
