"""Build a ggmlpy tokenizer from GGUF tokenizer metadata read with the `gguf` package
(gguf.GGUFReader), or from explicit fields. The C++ side can also read a file directly
(`_core.Tokenizer.from_gguf(path)`); this module is the pure-Python path the tests use to feed the
same metadata to both ggmlpy and independent reference tokenizers."""
from __future__ import annotations

from typing import Any

from . import _core

_PREFIX = "tokenizer.ggml."


def _text(b: bytes):
    """str when valid UTF-8, else the raw bytes (the C++ side takes either)."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b


def _field_value(field) -> Any:
    """Value of one gguf.ReaderField: a scalar, a str, or a list of scalars/str."""
    import gguf

    types = list(field.types)
    if not types:
        return None
    if types[0] == gguf.GGUFValueType.ARRAY:
        if types[-1] == gguf.GGUFValueType.STRING:
            return [_text(bytes(field.parts[i])) for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if types[0] == gguf.GGUFValueType.STRING:
        return _text(bytes(field.parts[field.data[0]]))
    return field.parts[field.data[0]].tolist()[0]


def vocab_fields(reader) -> dict:
    """Keyword arguments for `_core.Tokenizer` from a gguf.GGUFReader (tokenizer.ggml.* keys;
    defaults as llama.cpp's: pre "default", add_bos and add_space_prefix true for "llama")."""
    meta = {k[len(_PREFIX):]: _field_value(f) for k, f in reader.fields.items() if k.startswith(_PREFIX)}
    if "model" not in meta:
        raise ValueError(f"{getattr(reader, 'path', 'GGUF')}: key 'tokenizer.ggml.model' is missing")
    if not meta.get("tokens"):
        raise ValueError(f"{getattr(reader, 'path', 'GGUF')}: key 'tokenizer.ggml.tokens' is missing or empty")
    spm = meta["model"] == "llama"
    kw = dict(
        model=meta["model"],
        pre=meta.get("pre", "default"),
        tokens=meta["tokens"],
        scores=[float(x) for x in meta.get("scores", [])],
        token_types=[int(x) for x in meta.get("token_type", [])],
        merges=meta.get("merges", []),
        add_bos=bool(meta.get("add_bos_token", spm)),
        add_eos=bool(meta.get("add_eos_token", False)),
        add_space_prefix=bool(meta.get("add_space_prefix", spm)),
    )
    for key, arg in (("bos_token_id", "bos"), ("eos_token_id", "eos"), ("unknown_token_id", "unk"),
                     ("padding_token_id", "pad"), ("eot_token_id", "eot")):
        if key in meta:
            kw[arg] = int(meta[key])
    return kw


def tokenizer_from_reader(reader, **overrides) -> "_core.Tokenizer":
    """`_core.Tokenizer` from a gguf.GGUFReader; keyword overrides replace metadata fields
    (e.g. add_bos=True)."""
    kw = vocab_fields(reader)
    kw.update(overrides)
    return _core.Tokenizer(**kw)


def tokenizer_from_gguf(path, **overrides) -> "_core.Tokenizer":
    """`_core.Tokenizer` from the metadata of the GGUF file at `path` (read with gguf.GGUFReader)."""
    import gguf

    return tokenizer_from_reader(gguf.GGUFReader(str(path)), **overrides)
