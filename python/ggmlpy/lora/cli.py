"""`ggmlpy export-lora -m BASE --lora PATH[:SCALE] [--lora ...] -o OUT.gguf [--outtype TYPE]`:
merge LoRA adapters into a new model file (merge.py). add_subparser() registers the command."""
from __future__ import annotations


def run(a) -> int:
    from ..cli import CliError, _resolve_model
    from .merge import export_lora
    from .specs import parse_lora_flag
    if not a.lora:
        raise CliError("export-lora needs at least one --lora PATH[:SCALE]")
    base = _resolve_model(a.model)
    out = export_lora(base, [parse_lora_flag(x) for x in a.lora], a.outfile, a.outtype,
                      progress=not a.no_progress)
    print(out)
    return 0


def add_subparser(sub) -> None:
    from ..quantize import TYPE_NAMES
    s = sub.add_parser("export-lora", help="merge LoRA adapters into a new GGUF model file",
                       description=__doc__.split("\n")[0])
    s.add_argument("-m", "--model", help="base GGUF model (default: the default model)")
    s.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                   help="GGUF LoRA adapter to merge (repeatable; SCALE default 1)")
    s.add_argument("-o", "--outfile", required=True, help="output .gguf path")
    s.add_argument("--outtype", choices=TYPE_NAMES, default=None,
                   help="type of every weight in the output (default: each keeps the base's type)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=run)
