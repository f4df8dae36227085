"""Tokenizer metadata for GGUF (tokenizer.ggml.*) from a Hugging Face folder: byte-level BPE from
tokenizer.json or vocab.json+merges.txt ("gpt2" model, tokenizer.ggml.pre named from the
pre-tokenizer: gpt2 / llama-bpe / smollm), SentencePiece from tokenizer.model ("llama" model:
pieces, scores, types), special token ids, add_bos/add_eos and the chat template.
The token list is padded to the model's vocab_size with unused "[PADn]" tokens.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import gguf

log = logging.getLogger("ggmlpy.convert")

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
APPROXIMATE_KEY = "ggmlpy.tokenizer.approximate"


@dataclass
class TokenizerMeta:
    model: str                          # "gpt2" (BPE) or "llama" (SPM)
    tokens: List[str]
    token_types: List[int]
    pre: Optional[str] = None
    scores: Optional[List[float]] = None
    merges: List[str] = field(default_factory=list)
    bos: Optional[int] = None
    eos: Optional[int] = None
    unk: Optional[int] = None
    pad: Optional[int] = None
    add_bos: Optional[bool] = None
    add_eos: Optional[bool] = None
    add_space_prefix: Optional[bool] = None
    remove_extra_whitespaces: Optional[bool] = None   # SPM normalizer: collapse/strip spaces
    chat_template: Optional[object] = None   # str, or list of {"name", "template"}
    approximate: bool = False

    def write(self, w: gguf.GGUFWriter) -> None:
        w.add_tokenizer_model(self.model)
        if self.pre:
            w.add_tokenizer_pre(self.pre)
        w.add_token_list(self.tokens)
        if self.scores is not None:
            w.add_token_scores(self.scores)
        w.add_token_types(self.token_types)
        if self.merges:
            w.add_token_merges(self.merges)
        for setter, v in ((w.add_bos_token_id, self.bos), (w.add_eos_token_id, self.eos),
                          (w.add_unk_token_id, self.unk), (w.add_pad_token_id, self.pad)):
            if v is not None and v >= 0:
                setter(int(v))
        if self.add_bos is not None:
            w.add_add_bos_token(bool(self.add_bos))
        if self.add_eos is not None:
            w.add_add_eos_token(bool(self.add_eos))
        if self.add_space_prefix is not None:
            w.add_add_space_prefix(bool(self.add_space_prefix))
        if self.remove_extra_whitespaces is not None:
            w.add_remove_extra_whitespaces(bool(self.remove_extra_whitespaces))
        if self.chat_template:
            w.add_chat_template(self.chat_template)
        if self.approximate:
            w.add_bool(APPROXIMATE_KEY, True)

    def pad_to(self, n_vocab: int) -> None:
        if n_vocab < len(self.tokens):
            raise ValueError(f"tokenizer has {len(self.tokens)} tokens but the model's vocab_size "
                             f"is {n_vocab}")
        for i in range(len(self.tokens), n_vocab):
            self.tokens.append(f"[PAD{i}]")
            self.token_types.append(UNUSED)
            if self.scores is not None:
                self.scores.append(-1000.0)


def bytes_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None


def _token_content(v) -> Optional[str]:
    if isinstance(v, dict):
        return v.get("content")
    return v if isinstance(v, str) else None


def _flatten_pre(pt) -> list:
    if not pt:
        return []
    if pt.get("type") == "Sequence":
        out = []
        for p in pt.get("pretokenizers", []):
            out += _flatten_pre(p)
        return out
    return [pt]


LLAMA3_REGEX_PARTS = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)", "\\p{N}{1,3}")


def detect_bpe_pre(tj: dict, where: str) -> str:
    """Names the pre-tokenizer the way tokenizer.ggml.pre does, from its structure."""
    pts = _flatten_pre(tj.get("pre_tokenizer"))
    kinds = [p.get("type") for p in pts]
    if kinds == ["ByteLevel"] and pts[0].get("use_regex", True):
        return "gpt2"
    if kinds == ["Digits", "ByteLevel"] and pts[0].get("individual_digits") and \
            pts[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not pts[1].get("use_regex", True):
        pat = pts[0].get("pattern", {})
        regex = pat.get("Regex", "") if isinstance(pat, dict) else ""
        if all(part in regex for part in LLAMA3_REGEX_PARTS):
            return "llama-bpe"
    raise ValueError(f"{where}: unsupported BPE pre-tokenizer {json.dumps(tj.get('pre_tokenizer'))[:300]}"
                     " (supported: GPT-2 ByteLevel, Llama-3 Split+ByteLevel, SmolLM Digits+ByteLevel)")


def _is_byte_level(tj: dict) -> bool:
    kinds = [p.get("type") for p in _flatten_pre(tj.get("pre_tokenizer"))]
    dec = tj.get("decoder") or {}
    return "ByteLevel" in kinds or dec.get("type") == "ByteLevel"


def _special_ids(folder: Path, lookup, cfg: dict) -> dict:
    """bos/eos/unk/pad ids from tokenizer_config.json / special_tokens_map.json, else config.json."""
    out = {}
    tc = _read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    sm = _read_json(folder / "special_tokens_map.json") if (folder / "special_tokens_map.json").is_file() else {}
    for key in ("bos", "eos", "unk", "pad"):
        content = _token_content(tc.get(f"{key}_token")) or _token_content(sm.get(f"{key}_token"))
        tid = lookup(content) if content is not None else None
        if tid is None:
            v = cfg.get(f"{key}_token_id")
            if isinstance(v, list):
                v = v[0] if v else None
            tid = v if isinstance(v, int) else None
        out[key] = tid
    out["add_bos"] = tc.get("add_bos_token")
    out["add_eos"] = tc.get("add_eos_token")
    return out


def _chat_template(folder: Path):
    tc_path = folder / "tokenizer_config.json"
    if tc_path.is_file():
        t = _read_json(tc_path).get("chat_template")
        if t:
            return t
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").is_file():
        return _read_json(folder / "chat_template.json").get("chat_template")
    return None


def bpe_from_tokenizer_json(path: Path) -> TokenizerMeta:
    tj = _read_json(path)
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: tokenizer model type {model.get('type')!r} is not supported "
                         "(expected BPE, or a tokenizer.model for SentencePiece)")
    if not _is_byte_level(tj):
        raise ValueError(f"{path}: BPE tokenizer is not byte-level (a SentencePiece-style BPE); "
                         "provide its tokenizer.model")
    pre = detect_bpe_pre(tj, str(path))
    vocab = model.get("vocab") or {}
    added = tj.get("added_tokens") or []
    ids = {**{t: i for t, i in vocab.items()}, **{a["content"]: a["id"] for a in added}}
    n = max(ids.values()) + 1 if ids else 0
    tokens: List[Optional[str]] = [None] * n
    types = [NORMAL] * n
    for t, i in vocab.items():
        tokens[i] = t
    for a in added:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = CONTROL if a.get("special") else USER_DEFINED
    for i, t in enumerate(tokens):
        if t is None:
            tokens[i] = f"[PAD{i}]"
            types[i] = UNUSED
    merges = []
    for m in model.get("merges") or []:
        merges.append(" ".join(m) if isinstance(m, (list, tuple)) else m)
    meta = TokenizerMeta(model="gpt2", pre=pre, tokens=tokens, token_types=types, merges=merges)
    # add_bos from the post-processor when tokenizer_config.json does not say
    pp = tj.get("post_processor") or {}
    procs = pp.get("processors", [pp]) if pp.get("type") == "Sequence" else [pp]
    for p in procs:
        if p.get("type") == "TemplateProcessing":
            single = p.get("single") or []
            meta.add_bos = bool(single) and "SpecialToken" in single[0]
    meta._ids = ids  # for special-token lookup
    return meta


def bpe_from_vocab_merges(vocab_path: Path, merges_path: Path) -> TokenizerMeta:
    vocab = _read_json(vocab_path)
    ids = dict(vocab)
    added_path = vocab_path.parent / "added_tokens.json"
    added = _read_json(added_path) if added_path.is_file() else {}
    ids.update(added)
    n = max(ids.values()) + 1
    tokens: List[Optional[str]] = [None] * n
    types = [NORMAL] * n
    for t, i in ids.items():
        tokens[i] = t
    for t, i in added.items():
        types[i] = USER_DEFINED
    for i, t in enumerate(tokens):
        if t is None:
            tokens[i] = f"[PAD{i}]"
            types[i] = UNUSED
    merges = read_merges_txt(merges_path)
    if "<|endoftext|>" in ids:
        types[ids["<|endoftext|>"]] = CONTROL
    tc_path = vocab_path.parent / "tokenizer_config.json"  # added_tokens_decoder says which are special
    if tc_path.is_file():
        for i, t in (_read_json(tc_path).get("added_tokens_decoder") or {}).items():
            if isinstance(t, dict) and str(i).isdigit() and int(i) < n and t.get("content") == tokens[int(i)]:
                types[int(i)] = CONTROL if t.get("special") else USER_DEFINED
    meta = TokenizerMeta(model="gpt2", pre="gpt2", tokens=tokens, token_types=types, merges=merges)
    meta._ids = ids
    return meta


def read_merges_txt(path: Path) -> List[str]:
    merges = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#version"):
            continue
        if len(line.split(" ")) != 2:
            raise ValueError(f"{path}: bad merge line {line!r} (expected 'a b')")
        merges.append(line)
    return merges


def spm_from_model(path: Path, folder: Path) -> TokenizerMeta:
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(path))
    except Exception as e:
        raise ValueError(f"{path}: not a SentencePiece model ({e})") from None
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(float(sp.get_score(i)))
        types.append(UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else
                     UNUSED if sp.is_unused(i) else BYTE if sp.is_byte(i) else NORMAL)
    add_prefix, remove_ws = True, False
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb
        proto = pb.ModelProto()
        proto.ParseFromString(path.read_bytes())
        add_prefix = bool(proto.normalizer_spec.add_dummy_prefix)
        remove_ws = bool(proto.normalizer_spec.remove_extra_whitespaces)
        for i, p in enumerate(proto.pieces):  # USER_DEFINED has no query in the processor API
            if p.type == pb.ModelProto.SentencePiece.USER_DEFINED:
                types[i] = USER_DEFINED
    except ImportError:
        pass
    added_path = folder / "added_tokens.json"
    if added_path.is_file():
        for t, i in sorted(_read_json(added_path).items(), key=lambda kv: kv[1]):
            if i < len(tokens):
                continue
            if i != len(tokens):
                raise ValueError(f"{added_path}: token {t!r} id {i} leaves a gap after "
                                 f"{len(tokens)} tokens")
            tokens.append(t)
            scores.append(-1000.0)
            types.append(USER_DEFINED)
    meta = TokenizerMeta(model="llama", pre="default", tokens=tokens, token_types=types,
                         scores=scores, add_space_prefix=add_prefix, add_bos=True, add_eos=False)
    meta.bos = sp.bos_id() if sp.bos_id() >= 0 else None
    meta.eos = sp.eos_id() if sp.eos_id() >= 0 else None
    meta.unk = sp.unk_id() if sp.unk_id() >= 0 else None
    meta.pad = sp.pad_id() if sp.pad_id() >= 0 else None
    meta.remove_extra_whitespaces = remove_ws
    meta._ids = {t: i for i, t in enumerate(tokens)}
    return meta


def from_hf_folder(folder: Path, cfg: dict, n_vocab: Optional[int]) -> TokenizerMeta:
    """Tokenizer metadata for a HF folder, padded to n_vocab (the embedding rows)."""
    tj_path, sp_path = folder / "tokenizer.json", folder / "tokenizer.model"
    tj = _read_json(tj_path) if tj_path.is_file() else None
    if sp_path.is_file() and (tj is None or not _is_byte_level(tj)):
        meta = spm_from_model(sp_path, folder)
    elif tj is not None:
        meta = bpe_from_tokenizer_json(tj_path)
    elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        meta = bpe_from_vocab_merges(folder / "vocab.json", folder / "merges.txt")
    else:
        raise FileNotFoundError(f"{folder}: no tokenizer (expected tokenizer.json, tokenizer.model "
                                "or vocab.json + merges.txt)")
    ids = meta._ids
    sp = _special_ids(folder, lambda c: ids.get(c), cfg)
    for key in ("bos", "eos", "unk", "pad"):
        if sp[key] is not None:
            setattr(meta, key, sp[key])
    if sp["add_bos"] is not None:
        meta.add_bos = bool(sp["add_bos"])
    if sp["add_eos"] is not None:
        meta.add_eos = bool(sp["add_eos"])
    if meta.model == "gpt2" and meta.add_bos is None:
        meta.add_bos = False
    meta.chat_template = _chat_template(folder)
    if n_vocab is not None:
        meta.pad_to(n_vocab)
    for key in ("bos", "eos", "unk", "pad"):
        v = getattr(meta, key)
        if v is not None and not 0 <= v < len(meta.tokens):
            raise ValueError(f"{folder}: {key} token id {v} is outside the vocabulary of "
                             f"{len(meta.tokens)} tokens")
    return meta
