"""`ggmlpy convert SOURCE -o OUT.gguf [--outtype f32|f16|bf16|q8_0] [--vocab-only] [--revision R]`.
SOURCE: a Hugging Face model folder or Hub repo id (Llama family, GPT-J), or a legacy ggml GPT-J
.bin / llama2.c .bin file, or a PEFT LoRA adapter folder with --base (GGUF LoRA adapter out).
add_subparser() registers the command on the main CLI's subparsers.
"""
from __future__ import annotations

import logging
import os


def run(args) -> int:
    from .hf_convert import convert_hf
    from .legacy import convert_legacy
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    progress = not args.no_progress
    if os.path.isfile(os.path.join(args.source, "adapter_config.json")):
        from ..lora.peft_convert import convert_peft
        if not args.base:
            raise ValueError(f"{args.source} is a PEFT adapter: pass --base with its base model "
                             "(GGUF file or Hugging Face folder)")
        if args.outtype not in (None, "f32", "f16"):
            raise ValueError("--outtype for an adapter: f32 (default) or f16")
        print(convert_peft(args.source, args.outfile, args.base, args.outtype or "f32", progress))
        return 0
    if args.base:
        raise ValueError(f"--base applies to PEFT adapter folders only ({args.source} has no "
                         "adapter_config.json)")
    # errors (ValueError, OSError) reach the main CLI, which prints `ggmlpy: error: ...`
    if os.path.isfile(args.source):
        if args.vocab_only or args.revision:
            raise ValueError("--vocab-only and --revision apply to Hugging Face sources only")
        out = convert_legacy(args.source, args.outfile, args.outtype, args.tokenizer, progress)
    else:
        out = convert_hf(args.source, args.outfile, args.outtype or "f16", args.vocab_only,
                         args.revision, progress)
    print(out)
    return 0


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a Hugging Face model or a legacy .bin to GGUF",
        description=__doc__.split("\n")[0])
    p.add_argument("source", help="HF model folder, Hub repo id (org/name), PEFT adapter folder, ggml GPT-J .bin or "
                                  "llama2.c .bin")
    p.add_argument("-o", "--outfile", required=True, help="output .gguf path")
    p.add_argument("--outtype", choices=["f32", "f16", "bf16", "q8_0"], default=None,
                   help="type of 2-D weights (1-D stay f32). Default: f16 for HF sources; legacy "
                        "files keep their stored types (llama2.c: f32)")
    p.add_argument("--vocab-only", action="store_true", help="write only the tokenizer metadata")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    p.add_argument("--tokenizer", default=None,
                   help="legacy files: merges.txt/tokenizer.json (GPT-J) or tokenizer.bin "
                        "(llama2.c); default: looked up beside SOURCE")
    p.add_argument("--base", default=None,
                   help="PEFT adapter sources: the base model (GGUF file or HF folder) it adapts")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
