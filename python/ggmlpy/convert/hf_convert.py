"""convert_hf(source, out, outtype): a Hugging Face folder or Hub repo id -> GGUF, for the
architectures in ARCHS (Llama family, GPT-J). Everything is validated (config, tokenizer, tensor
names and shapes) before the output file is created; the write itself is streaming and atomic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import gguf

from . import gptj, llama, tokenizer_meta
from .hf import Checkpoint, read_config, resolve_source
from .writer import OUTTYPES, write_gguf

ARCHS = {}
for _a in llama.ARCHITECTURES:
    ARCHS[_a] = ("llama", llama)
for _a in gptj.ARCHITECTURES:
    ARCHS[_a] = ("gptj", gptj)


def detect_arch(cfg: dict, where: str):
    names = cfg.get("architectures") or []
    for n in names:
        if n in ARCHS:
            return ARCHS[n]
    mt = cfg.get("model_type")
    if not names and mt in ("llama", "mistral"):
        return ARCHS["LlamaForCausalLM"]
    if not names and mt == "gptj":
        return ARCHS["GPTJForCausalLM"]
    raise ValueError(f"{where}: unsupported architecture {names or mt!r} "
                     f"(supported: {', '.join(sorted(ARCHS))})")


def convert_hf(source: str, out: str, outtype: str = "f16", vocab_only: bool = False,
               revision: Optional[str] = None, progress: bool = True) -> str:
    if outtype not in OUTTYPES:
        raise ValueError(f"--outtype {outtype!r}: expected one of {', '.join(OUTTYPES)}")
    folder = resolve_source(source, revision=revision, vocab_only=vocab_only)
    where = str(folder)
    cfg = read_config(folder)
    arch_name, mod = detect_arch(cfg, where)
    params_cls = llama.LlamaParams if arch_name == "llama" else gptj.GPTJParams
    tok = tokenizer_meta.from_hf_folder(folder, cfg, None)
    if vocab_only:
        params = params_cls(cfg, where)
        plans = []
    else:
        ckpt = Checkpoint(folder)
        params, plans = mod.plan(cfg, ckpt, outtype, where)
    tok.pad_to(params.n_vocab)
    ftype = OUTTYPES[outtype][1]

    def add_metadata(w: gguf.GGUFWriter) -> None:
        w.add_name(folder.name)
        params.add_metadata(w)
        if not vocab_only:
            w.add_file_type(int(ftype))
            if outtype == "q8_0":
                w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        tok.write(w)

    return write_gguf(out, arch_name, add_metadata, plans, progress=progress,
                      desc=Path(out).name)
