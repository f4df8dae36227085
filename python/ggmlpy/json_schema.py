"""JSON Schema -> GBNF grammar text, for constrained generation (see grammar.py).

Every document the grammar accepts parses with json.loads and validates against the schema; the
grammar may accept fewer documents than the schema (object properties come in the schema's order,
only declared properties are generated, whitespace is bounded), never more. Supported: type
(one or a list), enum, const, object (properties, required, additionalProperties), array (items,
minItems, maxItems), string (minLength, maxLength), integer (also minimum, maximum,
exclusiveMinimum, exclusiveMaximum), number, boolean, null, anyOf,
oneOf (only when its branches can never match the same value), allOf with one member, and $ref to
"#", "#/$defs/..." or "#/definitions/..." (recursion allowed). Annotations (title, description,
default, examples, ...) are ignored. Any other keyword changes which documents are valid, so it
raises ValueError naming the keyword and where it is, instead of being silently ignored.

String lengths count characters as Python does: a \\u escape of a surrogate is only accepted as
a high + low pair, which the grammar counts as one character, so each grammar character is one
code point of the decoded string.
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional

ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
               "readOnly", "writeOnly", "$defs", "definitions", "$anchor"}
SUPPORTED = {"type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems",
             "maxItems", "minLength", "maxLength", "anyOf", "oneOf", "allOf", "$ref",
             "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}   # bounds: integers only
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
INT_LIMIT = 10**16 - 1   # the integer rule's 16 digits
TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
MAX_COUNT = 10000        # minItems/maxItems/minLength/maxLength: the grammar spells them out
MAX_DEPTH = 64           # nesting of schemas (not of $ref recursion, which becomes rule recursion)

# Building blocks. Whitespace between tokens is bounded (at most a newline and 12 spaces) so a
# sampled document cannot wander off into endless blanks. Surrogate \u escapes only come in pairs.
PRIMITIVES = {
    "ws": '( " " | "\\n" " "{0,12} )?',
    "hex": "[0-9a-fA-F]",
    "char": '[^"\\\\\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" ( [0-9a-cA-C] hex hex hex | [dD] [0-7] hex hex '
            '| [eEfF] hex hex hex | [dD] [89abAB] hex hex "\\\\u" [dD] [c-fC-F] hex hex ) )',
    "string": '"\\"" char* "\\""',
    "integer": '"-"? ( "0" | [1-9] [0-9]{0,15} )',
    "number": 'integer ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?',
    "boolean": '"true" | "false"',
    "null": '"null"',
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ws ( string ws ":" ws value ws ( "," ws string ws ":" ws value ws )* )? "}"',
    "array": '"[" ws ( value ws ( "," ws value ws )* )? "]"',
}
DEPENDS = {"char": ["hex"], "string": ["char"], "number": ["integer"],
           "value": ["object", "array", "string", "number", "boolean", "null"],
           "object": ["ws", "string", "value"], "array": ["ws", "value"]}

JSON_OBJECT_GRAMMAR = None   # filled below: any JSON object (response_format json_object)


def gbnf_literal(text: str) -> str:
    """A GBNF string literal matching exactly `text`."""
    out = []
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append("\\x%02X" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _json_literal(value) -> str:
    return gbnf_literal(json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False))


def _type_of(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "object"
    raise ValueError(f"json_schema: enum/const value {v!r} is not JSON")


class _Converter:
    def __init__(self, root: Any):
        self.root = root
        self.rules: Dict[str, str] = {}
        self.refs: Dict[str, str] = {}

    # ---- rule bookkeeping ------------------------------------------------------------------
    def prim(self, name: str) -> str:
        if name not in self.rules:
            self.rules[name] = PRIMITIVES[name]
            for d in DEPENDS.get(name, []):
                self.prim(d)
        return name

    def new_rule(self, hint: str, body: Optional[str] = None) -> str:
        base = re.sub(r"[^a-zA-Z0-9-]+", "-", hint).strip("-") or "r"
        if base in PRIMITIVES or base == "root":
            base += "-s"
        name, k = base, 1
        while name in self.rules:
            k += 1
            name = f"{base}-{k}"
        self.rules[name] = body if body is not None else ""
        return name

    # ---- schema walk: returns a GBNF expression ----------------------------------------------
    def visit(self, schema: Any, path: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise ValueError(f"json_schema: nested deeper than {MAX_DEPTH} levels at {path}")
        if schema is True or schema == {}:
            return self.prim("value")
        if schema is False:
            raise ValueError(f"json_schema: schema false at {path} matches no value, so nothing can be generated")
        if not isinstance(schema, dict):
            raise TypeError(f"json_schema: the schema at {path} must be a dict or a bool, "
                            f"got {type(schema).__name__}")
        for k in schema:
            if not isinstance(k, str):
                raise TypeError(f"json_schema: keys must be str, got {k!r} at {path}")
            if k not in SUPPORTED and k not in ANNOTATIONS:
                raise ValueError(f"json_schema: unsupported keyword '{k}' at {path} (it changes which "
                                 "documents are valid and the grammar cannot enforce it)")
        keys = set(schema) - ANNOTATIONS
        if "$ref" in schema:
            if keys != {"$ref"}:
                raise ValueError(f"json_schema: keywords beside '$ref' at {path} are not supported: "
                                 f"{sorted(keys - {'$ref'})}")
            return self.ref(schema["$ref"], path)
        if "allOf" in schema:
            parts = schema["allOf"]
            if not isinstance(parts, list) or len(parts) != 1 or keys != {"allOf"}:
                raise ValueError(f"json_schema: 'allOf' at {path} is supported only with one member and "
                                 "no other keywords beside it")
            return self.visit(parts[0], path + "/allOf/0", depth + 1)
        for comb in ("anyOf", "oneOf"):
            if comb in schema:
                if keys != {comb}:
                    raise ValueError(f"json_schema: keywords beside '{comb}' at {path} are not supported: "
                                     f"{sorted(keys - {comb})}")
                branches = schema[comb]
                if not isinstance(branches, list) or not branches:
                    raise ValueError(f"json_schema: '{comb}' at {path} must be a non-empty list")
                if comb == "oneOf":
                    self.check_disjoint(branches, path)
                alts = [self.visit(b, f"{path}/{comb}/{i}", depth + 1) for i, b in enumerate(branches)]
                return self.group(alts)
        if "const" in schema or "enum" in schema:
            return self.values(schema, keys, path)
        types = schema.get("type")
        if types is None:
            types = self.infer_type(schema, path)
            if types is None:
                return self.prim("value")
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise ValueError(f"json_schema: 'type' at {path} must be a type name or a non-empty list of them")
        for t in types:
            if t not in TYPES:
                raise ValueError(f"json_schema: unknown type {t!r} at {path} (expected one of {', '.join(TYPES)})")
        alts = [self.typed(t, schema, path, depth) for t in dict.fromkeys(types)]
        return self.group(alts)

    @staticmethod
    def group(alts: List[str]) -> str:
        return alts[0] if len(alts) == 1 else "( " + " | ".join(alts) + " )"

    @staticmethod
    def infer_type(schema, path):
        fam = []
        if {"properties", "required", "additionalProperties"} & set(schema):
            fam.append("object")
        if {"items", "minItems", "maxItems"} & set(schema):
            fam.append("array")
        if {"minLength", "maxLength"} & set(schema):
            fam.append("string")
        if set(BOUNDS) & set(schema):
            fam.append("number")
        if len(fam) > 1:
            raise ValueError(f"json_schema: schema at {path} has keywords of several types ({', '.join(fam)}) "
                             "and no 'type'")
        return fam or None   # None: no constraint at all, any JSON value

    def values(self, schema, keys, path) -> str:
        if "const" in schema:
            vals = [schema["const"]]
            if "enum" in schema:
                vals = [v for v in schema["enum"] if v == vals[0] and _type_of(v) == _type_of(vals[0])]
        else:
            vals = schema["enum"]
            if not isinstance(vals, list) or not vals:
                raise ValueError(f"json_schema: 'enum' at {path} must be a non-empty list")
        extra = keys - {"const", "enum", "type"}
        if extra:
            raise ValueError(f"json_schema: keywords beside enum/const at {path} are not supported: {sorted(extra)}")
        if "type" in schema:
            allowed = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            vals = [v for v in vals if _type_of(v) in allowed or (_type_of(v) == "integer" and "number" in allowed)
                    or (_type_of(v) == "number" and "integer" in allowed and float(v).is_integer())]
        if not vals:
            raise ValueError(f"json_schema: enum/const at {path} leaves no allowed value")
        return self.group([_json_literal(v) for v in vals])

    def ref(self, ref, path) -> str:
        if not isinstance(ref, str):
            raise ValueError(f"json_schema: '$ref' at {path} must be a str")
        if ref in self.refs:
            return self.refs[ref]
        m = re.fullmatch(r"#(?:/(\$defs|definitions)/([^/]+))?", ref)
        if not m:
            raise ValueError(f"json_schema: '$ref' {ref!r} at {path} is not supported (only '#', "
                             "'#/$defs/<name>' and '#/definitions/<name>')")
        if m.group(1) is None:
            target, hint = self.root, "root-ref"
        else:
            table = self.root.get(m.group(1)) if isinstance(self.root, dict) else None
            name = m.group(2).replace("~1", "/").replace("~0", "~")
            if not isinstance(table, dict) or name not in table:
                raise ValueError(f"json_schema: '$ref' {ref!r} at {path} points to nothing")
            target, hint = table[name], "def-" + name
        rule = self.new_rule(hint)
        self.refs[ref] = rule
        self.rules[rule] = self.visit(target, ref, 0)
        return rule

    def check_disjoint(self, branches, path):
        sigs = [self.signature(b, f"{path}/oneOf/{i}", 0) for i, b in enumerate(branches)]
        for i in range(len(sigs)):
            for j in range(i + 1, len(sigs)):
                a, b = sigs[i], sigs[j]
                if a[0] == b[0] == "values":
                    ok = not (a[1] & b[1])
                else:
                    ok = not (self.sig_types(a) & self.sig_types(b))
                if not ok:
                    raise ValueError(f"json_schema: 'oneOf' at {path}: branches {i} and {j} may match the same "
                                     "value, which the grammar cannot rule out; use anyOf, or branches of "
                                     "different types / different const values")

    @staticmethod
    def sig_types(sig):
        if sig[0] == "types":
            return sig[1]
        return {("number" if t == "integer" else t) for t, _ in sig[1]}

    def signature(self, schema, path, depth):
        """('values', {(type, json text)}) for enum/const-only schemas, else ('types', {family})."""
        if depth > MAX_DEPTH:
            return ("types", set(TYPES) - {"integer"})
        if schema is True or not isinstance(schema, dict):
            return ("types", set(TYPES) - {"integer"})
        if "$ref" in schema and isinstance(schema["$ref"], str):
            m = re.fullmatch(r"#/(\$defs|definitions)/([^/]+)", schema["$ref"])
            table = self.root.get(m.group(1)) if m and isinstance(self.root, dict) else None
            if isinstance(table, dict) and m.group(2) in table:
                return self.signature(table[m.group(2)], path, depth + 1)
            return ("types", set(TYPES) - {"integer"})
        if "const" in schema or "enum" in schema:
            vals = [schema["const"]] if "const" in schema else list(schema.get("enum") or [])
            return ("values", {(_type_of(v), json.dumps(v, sort_keys=True)) for v in vals})
        for comb in ("anyOf", "oneOf", "allOf"):
            if isinstance(schema.get(comb), list):
                out = set()
                for b in schema[comb]:
                    out |= self.sig_types(self.signature(b, path, depth + 1))
                return ("types", out)
        t = schema.get("type")
        if t is None:
            t = self.infer_type(schema, path) or (set(TYPES) - {"integer"})
        t = [t] if isinstance(t, str) else list(t)
        return ("types", {("number" if x == "integer" else x) for x in t})

    # ---- one JSON type ---------------------------------------------------------------------
    def typed(self, t, schema, path, depth) -> str:
        bounded = [k for k in BOUNDS if k in schema]
        if t == "integer" and bounded:
            lo, hi = int_bounds(schema, path)
            return self.new_rule(path_hint(path, "integer"), int_range_gbnf(lo, hi))
        if t == "number" and bounded:
            raise ValueError(f"json_schema: '{bounded[0]}' at {path} is supported for type integer only, "
                             "not number")
        if t in ("integer", "number", "boolean", "null"):
            return self.prim(t)
        if t == "string":
            lo, hi = self.bounds(schema, "minLength", "maxLength", path)
            if lo == 0 and hi is None:
                return self.prim("string")
            self.prim("char")
            rep = f"{{{lo},}}" if hi is None else f"{{{lo},{hi}}}"
            return self.new_rule(path_hint(path, "string"), f'"\\"" char{rep} "\\""')
        if t == "array":
            return self.array(schema, path, depth)
        return self.object(schema, path, depth)

    @staticmethod
    def bounds(schema, kmin, kmax, path):
        lo, hi = schema.get(kmin, 0), schema.get(kmax)
        for k, v in ((kmin, lo), (kmax, hi)):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"json_schema: '{k}' at {path} must be an int >= 0, got {v!r}")
            if v > MAX_COUNT:
                raise ValueError(f"json_schema: '{k}' = {v} at {path} is larger than the {MAX_COUNT} supported")
        if hi is not None and hi < lo:
            raise ValueError(f"json_schema: '{kmax}' < '{kmin}' at {path}: no value is valid")
        return lo, hi

    def array(self, schema, path, depth) -> str:
        self.prim("ws")
        lo, hi = self.bounds(schema, "minItems", "maxItems", path)
        items = schema.get("items", True)
        if items is False:
            if lo > 0:
                raise ValueError(f"json_schema: 'items': false with minItems > 0 at {path}: no value is valid")
            hi = 0
        if isinstance(items, list):
            raise ValueError(f"json_schema: 'items' as a list (tuple validation) at {path} is not supported")
        if hi == 0:
            return self.new_rule(path_hint(path, "array"), '"[" ws "]"')
        name = self.new_rule(path_hint(path, "array"))
        item = self.new_rule(name + "-item", self.visit(items, path + "/items", depth + 1) + " ws")
        more_lo = max(lo - 1, 0)
        rep = f"{{{more_lo},}}" if hi is None else f"{{{more_lo},{hi - 1}}}"
        body = f'{item} ( "," ws {item} ){rep}'
        self.rules[name] = f'"[" ws {body} "]"' if lo > 0 else f'"[" ws ( {body} )? "]"'
        return name

    def object(self, schema, path, depth) -> str:
        self.prim("ws")
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise ValueError(f"json_schema: 'properties' at {path} must be a dict")
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise ValueError(f"json_schema: 'required' at {path} must be a list of str")
        addl = schema.get("additionalProperties", True)
        order = list(props) + [r for r in dict.fromkeys(required) if r not in props]
        if addl is False and len(order) > len(props):
            raise ValueError(f"json_schema: required property {order[len(props)]!r} at {path} is not in "
                             "'properties' and additionalProperties is false: no value is valid")
        name = self.new_rule(path_hint(path, "object"))
        if not order:
            if addl is False:
                self.rules[name] = '"{" ws "}"'
                return name
            if addl is True:
                self.prim("object")
                del self.rules[name]
                return "object"
            # free-form keys, each value matching additionalProperties
            self.prim("string")
            val = self.visit(addl, path + "/additionalProperties", depth + 1)
            kv = self.new_rule(name + "-kv", f'string ws ":" ws {val} ws')
            self.rules[name] = f'"{{" ws ( {kv} ( "," ws {kv} )* )? "}}"'
            return name
        # Properties in schema order. a_i: the rest when something was already written (each
        # entry then starts with ","), b_i: the rest when nothing was, so commas are exact.
        kvs, req = [], set(required)
        for key in order:
            sub = props.get(key, True)
            val = self.visit(sub, f"{path}/properties/{key}", depth + 1)
            kvs.append(self.new_rule(f"{name}-{key}-kv", f'{_json_literal(key)} ws ":" ws {val} ws'))
        n = len(order)
        a = [self.new_rule(f"{name}-a{i}") for i in range(n + 1)]
        b = [self.new_rule(f"{name}-b{i}") for i in range(n + 1)]
        self.rules[a[n]] = '""'
        self.rules[b[n]] = '""'
        for i in range(n - 1, -1, -1):
            if order[i] in req:
                self.rules[a[i]] = f'"," ws {kvs[i]} {a[i + 1]}'
                self.rules[b[i]] = f'{kvs[i]} {a[i + 1]}'
            else:
                self.rules[a[i]] = f'"," ws {kvs[i]} {a[i + 1]} | {a[i + 1]}'
                self.rules[b[i]] = f'{kvs[i]} {a[i + 1]} | {b[i + 1]}'
        self.rules[name] = f'"{{" ws {b[0]} "}}"'
        return name


def int_bounds(schema, path):
    """(lo, hi) of the integers allowed by minimum/maximum/exclusive* (None: unbounded)."""
    lo = hi = None
    for k in BOUNDS:
        if k not in schema:
            continue
        v = schema[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or abs(v) == float("inf"):
            raise ValueError(f"json_schema: '{k}' at {path} must be a finite number, got {v!r}")
        if k == "minimum":
            b = -int(-v // 1)                      # ceil
        elif k == "exclusiveMinimum":
            b = int(v // 1) + 1                    # floor + 1
        elif k == "maximum":
            b = int(v // 1)                        # floor
        else:
            b = -int(-v // 1) - 1                  # ceil - 1
        if k.endswith("inimum"):
            lo = b if lo is None else max(lo, b)
        else:
            hi = b if hi is None else min(hi, b)
    for b in (lo, hi):
        if b is not None and abs(b) > INT_LIMIT:
            raise ValueError(f"json_schema: integer bound {b} at {path} is beyond the 16 digits supported")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"json_schema: integer bounds at {path} leave no value ({lo} > {hi})")
    return lo, hi


def _digits_range(a: str, b: str) -> List[str]:
    """GBNF sequences matching the decimal strings of equal length n from a to b (a <= b)."""
    if not a:
        return [""]
    if a[0] == b[0]:
        return [f'"{a[0]}" {p}'.strip() for p in _digits_range(a[1:], b[1:])]
    n = len(a) - 1
    if a[1:] == "0" * n and b[1:] == "9" * n:   # a whole block: one class per digit
        return [f"[{a[0]}-{b[0]}]" + " [0-9]" * n]
    out = [f'"{a[0]}" {p}'.strip() for p in _digits_range(a[1:], "9" * n)]
    if int(a[0]) + 1 <= int(b[0]) - 1:
        out.append(f"[{int(a[0]) + 1}-{int(b[0]) - 1}]" + " [0-9]" * n)
    out += [f'"{b[0]}" {p}'.strip() for p in _digits_range("0" * n, b[1:])]
    return out


def _nonneg_range(lo: int, hi: int) -> List[str]:
    """Sequences for the canonical decimal forms (no leading zeros) of lo..hi, 0 <= lo <= hi."""
    out = []
    for n in range(len(str(lo)), len(str(hi)) + 1):
        a = max(lo, 10 ** (n - 1) if n > 1 else 0)
        b = min(hi, 10 ** n - 1)
        if a <= b:
            out += _digits_range(str(a), str(b))
    return out


def int_range_gbnf(lo: Optional[int], hi: Optional[int]) -> str:
    """GBNF alternatives for the JSON integers in [lo, hi] (None: unbounded, up to 16 digits)."""
    lo = -INT_LIMIT if lo is None else lo
    hi = INT_LIMIT if hi is None else hi
    alts = []
    if hi >= 0:
        alts += _nonneg_range(max(lo, 0), hi)
    if lo < 0:   # "-" and the magnitudes; never "-0"
        alts += [f'"-" ( {p} )' for p in [" | ".join(_nonneg_range(max(1, -hi), -lo))]]
    return " | ".join(alts)


def path_hint(path: str, kind: str) -> str:
    tail = [p for p in path.split("/") if p and p not in ("#", "properties", "items", "anyOf", "oneOf")]
    return "-".join(tail[-2:] + [kind]) if tail else kind


def schema_to_gbnf(schema: Any) -> str:
    """GBNF text (root rule "root") whose sentences are JSON documents valid under `schema`."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as e:
            raise ValueError(f"json_schema: not valid JSON: {e}") from None
    conv = _Converter(schema)
    expr = conv.visit(schema, "#", 0)
    conv.prim("ws")
    rules = {"root": f"ws {expr}"}   # nothing after the document: generation stops right at its end
    rules.update(conv.rules)
    return "\n".join(f"{k} ::= {v}" for k, v in rules.items()) + "\n"


JSON_OBJECT_GRAMMAR = schema_to_gbnf({"type": "object"})


def response_format_grammar(response_format) -> Optional[str]:
    """GBNF for an OpenAI-style response_format, or None for plain text. Accepts
    {"type": "text"}, {"type": "json_object"} (optionally with "schema"), and
    {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": ...}}
    (or the schema directly under "schema")."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise TypeError(f"response_format must be a dict, got {type(response_format).__name__}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        return JSON_OBJECT_GRAMMAR if schema is None else schema_to_gbnf(schema)
    if kind == "json_schema":
        js = response_format.get("json_schema")
        if js is not None:
            if not isinstance(js, dict):
                raise TypeError("response_format['json_schema'] must be a dict with a 'schema'")
            schema = js.get("schema", None)
        else:
            schema = response_format.get("schema", None)
        if schema is None:
            raise ValueError("response_format of type 'json_schema' needs a schema: "
                             "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}")
        return schema_to_gbnf(schema)
    raise ValueError(f"response_format['type'] = {kind!r}, expected 'text', 'json_object' or 'json_schema'")
