"""ggmlpy command line: `ggmlpy info|generate|chat|bench|download|convert|quantize|serve ...`.
Flags follow llama.cpp / ggml (-m model, -p prompt, -n new tokens, -t threads). Bad input (missing
file, bad GGUF, bad argument) prints one line `ggmlpy: error: ...` on stderr and exits 1."""
import argparse
import os
import sys
import warnings


class CliError(Exception):
    """A user error the CLI reports in one line."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to a flag's help unless X is None / False or the help says it."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """--help shows each flag's default; errors are one line and exit 1 (argparse: usage + exit 2).
    Subcommand parsers are made by this class too, so every command's errors start `ggmlpy: error:`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        sys.stderr.write(f"ggmlpy: error: {message}\n")
        sys.exit(1)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _int_list(text: str):
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return vals


def _resolve_model(arg, progress=True) -> str:
    if arg:
        if not os.path.exists(arg):
            raise CliError(f"model file not found: {arg}")
        return arg
    from .hub import default_model_path
    path = default_model_path(download=True, progress=progress)
    print(f"ggmlpy: using the default model {path}", file=sys.stderr)
    return str(path)


def read_text_arg(path: str, what: str, errors: str = "strict") -> str:
    """The text of a -f/--file argument ('-': stdin), or a CliError naming `what` and the file."""
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8", errors=errors) as f:
            return f.read()
    except FileNotFoundError:
        raise CliError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read {what} {path}: {e}") from None


KV_TYPES = ("f16", "f32", "q8_0", "q4_0")


def _check(cond, flag, value, expected):
    if not cond:
        raise CliError(f"argument {flag}: {value!r}, expected {expected}")


# ---- info ------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    from . import _core
    print(_core.info_text())
    if args.model is None:
        return 0
    from .memory import parse_size, plan_lines
    try:
        budget = parse_size("--mem-budget", args.mem_budget)
    except (TypeError, ValueError) as e:
        raise CliError(f"argument {e}")
    _check(args.ctx_size >= 0, "-c/--ctx-size", args.ctx_size, "an int >= 0")
    from .model import Model
    path = _resolve_model(args.model)
    with Model(path, n_ctx=args.ctx_size, n_threads=1, mem_budget=budget) as m:
        print(f"\nmodel:       {path} ({m.arch}, n_ctx {m.n_ctx})")
        for line in plan_lines(m.memory):
            print(line)
    return 0


# ---- generate --------------------------------------------------------------------------------
def _add_model_flags(s):
    s.add_argument("-m", "--model", help="GGUF (or legacy .bin) model file; default: SmolLM2-135M-Instruct "
                   "Q4_1 from the cache, downloaded on first use")
    s.add_argument("-t", "--threads", type=int, default=0,
                   help="threads (0: the physical cores this process may run on; more than the usable "
                        "cores is much slower)")
    s.add_argument("-c", "--ctx-size", type=int, default=0, help="context size (0: the model's, capped at 4096)")
    s.add_argument("-b", "--batch-size", type=int, default=512, help="prompt tokens per forward pass")
    s.add_argument("--no-mmap", action="store_true", help="read the weights into memory instead of mapping")
    s.add_argument("--mlock", action="store_true", help="lock the weights in RAM")
    s.add_argument("--mem-budget", default="0", metavar="SIZE",
                   help="memory the weights may use, e.g. 6GiB (0: what is available); weights beyond it are "
                        "streamed from the file on every token")
    s.add_argument("-ctk", "--kv-type", default="f16",
                   help="KV cache type: f16 (default), f32, q8_0 (about half f16's memory) or q4_0")
    s.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                   help="apply a GGUF LoRA adapter, unmerged (repeatable; SCALE default 1)")


def _add_generate(sub):
    s = sub.add_parser("generate", help="generate text from a prompt (streams to stdout)",
                       description="Generate text; the text streams to stdout, a summary goes to stderr.")
    _add_model_flags(s)
    s.add_argument("-p", "--prompt", help="prompt text")
    s.add_argument("-f", "--file", help="read the prompt from a file ('-': stdin)")
    s.add_argument("-n", "--n-predict", type=int, default=128, help="new tokens (-1: until EOS or a full context)")
    s.add_argument("-s", "--seed", type=int, default=-1, help="RNG seed (-1: random)")
    s.add_argument("--temp", type=float, default=0.8, help="temperature (0: greedy)")
    s.add_argument("--top-k", type=int, default=40, help="top-k (0: off)")
    s.add_argument("--top-p", type=float, default=0.95, help="top-p (1: off)")
    s.add_argument("--min-p", type=float, default=0.05, help="min-p (0: off)")
    s.add_argument("--repeat-penalty", type=float, default=1.0, help="repetition penalty (1: off)")
    s.add_argument("--repeat-last-n", type=int, default=64, help="tokens the penalties look back (0: off, -1: all)")
    s.add_argument("--presence-penalty", type=float, default=0.0,
                   help="subtracted once from the logit of every token seen (0: off)")
    s.add_argument("--frequency-penalty", type=float, default=0.0,
                   help="subtracted from a token's logit per time it was seen (0: off)")
    s.add_argument("--stop", action="append", default=[], help="stop string (repeatable); never printed")
    s.add_argument("--ignore-eos", action="store_true", help="keep generating past end-of-generation tokens")
    s.add_argument("--no-echo", action="store_true", help="do not print the prompt before the generated text")
    s.add_argument("--draft", default=None,
                   help="speculative decoding: 'prompt-lookup' or a draft model GGUF with the same vocabulary "
                        "(the text is the same, only faster)")
    s.add_argument("--draft-k", type=int, default=None, help="tokens per draft (default 10 for prompt lookup, 4 for a model)")
    s.set_defaults(func=cmd_generate)


def _check_model_flags(a):
    _check(a.threads >= 0, "-t/--threads", a.threads, "an int >= 0")
    _check(a.ctx_size >= 0, "-c/--ctx-size", a.ctx_size, "an int >= 0")
    _check(a.batch_size >= 1, "-b/--batch-size", a.batch_size, "an int >= 1")
    a.kv_type = a.kv_type.strip().lower()
    _check(a.kv_type in KV_TYPES, "-ctk/--kv-type", a.kv_type, "one of " + ", ".join(KV_TYPES))
    from .memory import parse_size
    try:
        a.mem_budget = parse_size("--mem-budget", a.mem_budget)
    except (TypeError, ValueError) as e:
        raise CliError(f"argument {e}")
    from .lora import parse_lora_flag
    a.lora = [parse_lora_flag(x) for x in a.lora]


def cmd_generate(a) -> int:
    _check_model_flags(a)
    _check(a.n_predict >= -1, "-n/--n-predict", a.n_predict, "an int >= -1")
    _check(a.temp >= 0, "--temp", a.temp, ">= 0")
    _check(a.top_k >= 0, "--top-k", a.top_k, "an int >= 0")
    _check(0 < a.top_p <= 1, "--top-p", a.top_p, "in (0, 1]")
    _check(0 <= a.min_p <= 1, "--min-p", a.min_p, "in [0, 1]")
    _check(a.repeat_penalty > 0, "--repeat-penalty", a.repeat_penalty, "> 0")
    _check(a.repeat_last_n >= -1, "--repeat-last-n", a.repeat_last_n, "an int >= -1")
    if a.prompt is not None and a.file is not None:
        raise CliError("give either -p/--prompt or -f/--file, not both")
    if a.file is not None:
        prompt = read_text_arg(a.file, "prompt file")
    elif a.prompt is not None:
        prompt = a.prompt
    else:
        raise CliError("no prompt: give -p PROMPT or -f FILE")

    from .model import Model
    if a.draft_k is not None:
        _check(a.draft_k >= 2, "--draft-k", a.draft_k, "an int >= 2")
        if a.draft is None:
            raise CliError("--draft-k needs --draft")
    path = _resolve_model(a.model)
    model = Model(path, n_ctx=a.ctx_size, n_threads=a.threads, n_batch=a.batch_size,
                  use_mmap=not a.no_mmap, use_mlock=a.mlock, seed=a.seed, kv_type=a.kv_type,
                  mem_budget=a.mem_budget, lora=a.lora)
    out = sys.stdout.buffer
    stats = None
    draft = None
    try:
        if a.draft is not None:
            from .speculative import DraftModel, PromptLookup
            if a.draft == "prompt-lookup":
                drafter = PromptLookup(k=a.draft_k or 10)
            else:
                draft = Model(a.draft, n_ctx=model.n_ctx, n_threads=a.threads)
                drafter = DraftModel(draft, k=a.draft_k or 4)
            model._drafter = model._make_drafter(drafter)   # checks the vocabulary
        ids = model.tokenize(prompt)
        if len(ids) > model.n_ctx:
            raise CliError(f"the prompt is {len(ids)} tokens, longer than the context ({model.n_ctx} tokens): "
                           "raise -c/--ctx-size or shorten the prompt")
        it = model.generate(ids, max_new_tokens=a.n_predict, temperature=a.temp, top_k=a.top_k,
                            top_p=a.top_p, min_p=a.min_p, repetition_penalty=a.repeat_penalty,
                            frequency_penalty=a.frequency_penalty, presence_penalty=a.presence_penalty,
                            repeat_last_n=a.repeat_last_n, stop=a.stop or None,
                            seed=a.seed if a.seed >= 0 else None, stream=True, ignore_eos=a.ignore_eos)
        stats = model.last_stats
        if not a.no_echo:
            out.write(prompt.encode("utf-8"))
            out.flush()
        interrupted = False
        try:
            for piece in it:
                out.write(piece.encode("utf-8"))
                out.flush()
        except KeyboardInterrupt:
            interrupted = True
        out.write(b"\n")
        out.flush()
        _print_summary(model, stats, path)
        return 130 if interrupted else 0
    finally:
        model.close()
        if draft is not None:
            draft.close()


def _print_summary(model, st, path):
    err = sys.stderr
    mem = {}
    try:
        mem = model.memory
    except Exception:
        pass
    print(f"\nmodel:       {os.path.basename(path)} ({model.arch}, n_ctx {model.n_ctx}, "
          f"{plural(model.n_threads, 'thread')}, seed {st.seed})", file=err)
    print(f"load time:   {model.load_time * 1e3:9.2f} ms", file=err)
    print(f"prompt:      {st.prompt_tokens:6d} tokens in {st.prompt_time * 1e3:9.2f} ms "
          f"({st.prompt_tps:8.2f} tokens/s)", file=err)
    print(f"generation:  {st.generated_tokens:6d} tokens in {st.generation_time * 1e3:9.2f} ms "
          f"({st.generation_tps:8.2f} tokens/s), stopped: {st.finish_reason}", file=err)
    if st.draft_passes:
        print(f"drafts:      {st.draft_accepted} of {st.draft_tokens} drafted tokens kept, "
              f"{st.draft_passes} passes", file=err)
    line = f"peak RSS:    {_peak_rss_bytes() / 2**20:9.2f} MiB"
    if mem:
        line += (f" (weights {mem.get('weight_bytes', 0) / 2**20:.1f} MiB file-backed, "
                 f"KV cache {mem.get('kv_bytes', 0) / 2**20:.1f} MiB)")
    print(line, file=err)
    if mem.get("streamed_bytes"):
        from .memory import plan_lines
        for line in plan_lines(mem):
            print(line, file=err)


# ---- bench -----------------------------------------------------------------------------------
def _add_bench(sub):
    s = sub.add_parser("bench", help="prompt processing / generation speed, llama-bench style table")
    s.add_argument("-m", "--model", help="model file (default: the default model)")
    s.add_argument("-p", "--n-prompt", type=_int_list, default=[512],
                   help="prompt sizes, comma-separated (0: no prompt test)")
    s.add_argument("-n", "--n-gen", type=_int_list, default=[128],
                   help="generation lengths, comma-separated (0: no generation test)")
    s.add_argument("-t", "--threads", type=_int_list, default=None,
                   help="thread counts, comma-separated (default: the physical cores)")
    s.add_argument("-r", "--repetitions", type=int, default=5, help="runs per test (mean ± sd)")
    s.add_argument("-np", "--parallel", type=_int_list, default=None,
                   help="parallel sequences, comma-separated (like llama-batched-bench): aggregate "
                        "ppP@npB and tgN@npB over B sequences")
    s.add_argument("-d", "--n-depth", type=_int_list, default=[0],
                   help="tokens already in the KV cache before each test, comma-separated (like llama-bench's "
                        "-d: 'pp512 @ d4096' processes 512 tokens after 4096)")
    s.add_argument("-b", "--batch-size", type=int, default=512, help="prompt tokens per forward pass")
    s.add_argument("-ctk", "--kv-type", default="f16",
                   help="KV cache types, comma-separated (f16, f32, q8_0, q4_0; like llama-bench's -ctk/-ctv)")
    s.add_argument("--no-mmap", action="store_true", help="read the weights into memory instead of mapping")
    s.set_defaults(func=cmd_bench)


def cmd_bench(a) -> int:
    from .bench import markdown_table, run_bench
    _check(a.repetitions >= 1, "-r/--repetitions", a.repetitions, "an int >= 1")
    _check(a.batch_size >= 1, "-b/--batch-size", a.batch_size, "an int >= 1")
    for flag, vals in (("-p/--n-prompt", a.n_prompt), ("-n/--n-gen", a.n_gen)):
        _check(all(v >= 0 for v in vals), flag, vals, "integers >= 0")
    if not any(a.n_prompt) and not any(a.n_gen):
        raise CliError("nothing to measure: -p/--n-prompt and -n/--n-gen are all 0")
    threads = a.threads
    if threads is None:
        from . import _core
        threads = [getattr(_core, "default_threads", lambda: os.cpu_count() or 1)()]
    _check(all(t >= 1 for t in threads), "-t/--threads", threads, "integers >= 1")
    if a.parallel is not None:
        _check(all(1 <= b <= 256 for b in a.parallel), "-np/--parallel", a.parallel, "integers in [1, 256]")
    _check(all(d >= 0 for d in a.n_depth), "-d/--n-depth", a.n_depth, "integers >= 0")
    if a.parallel is not None and any(a.n_depth):
        raise CliError("-d/--n-depth is for single-sequence tests; -np measures from an empty cache")
    kv_types = [t.strip().lower() for t in a.kv_type.split(",")]
    _check(all(t in KV_TYPES for t in kv_types), "-ctk/--kv-type", a.kv_type, "a comma-separated list of " +
           ", ".join(KV_TYPES))
    path = _resolve_model(a.model)
    res = run_bench(path, a.n_prompt, a.n_gen, threads, repetitions=a.repetitions, n_batch=a.batch_size,
                    use_mmap=not a.no_mmap, parallel=a.parallel or (), depths=a.n_depth, kv_types=kv_types,
                    progress=lambda r: print(f"ggmlpy bench: threads {r.threads} {r.test}: "
                                             f"{r.mean:.2f} ± {r.sd:.2f} t/s", file=sys.stderr))
    print(markdown_table(res))
    return 0


# ---- download --------------------------------------------------------------------------------
def _add_download(sub):
    s = sub.add_parser("download", help="download a model (default: SmolLM2-135M-Instruct Q4_1) into the cache")
    s.add_argument("--default", action="store_true", help="the default model (also when no repo is given)")
    s.add_argument("repo_id", nargs="?", help="Hugging Face repo, e.g. org/name-GGUF")
    s.add_argument("filename", nargs="?", default="*.gguf", help="file name or glob in the repo")
    s.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit; default: main)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_download)


def cmd_download(a) -> int:
    from . import hub
    if a.default or not a.repo_id:
        path = hub.default_model_path(download=True, progress=not a.quiet)
    else:
        path = hub.hf_download(a.repo_id, a.filename, revision=a.revision, progress=not a.quiet)
    print(path)
    return 0


# ---- parser / main ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = _Parser(prog="ggmlpy", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"ggmlpy {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("info", help="version, CPU features, kernel table, threads; with -m, a model's memory plan")
    s.add_argument("-m", "--model", help="also load this model and show its weight memory plan")
    s.add_argument("-c", "--ctx-size", type=int, default=512, help="context size for the plan (default 512)")
    s.add_argument("--mem-budget", default="0", metavar="SIZE", help="memory the weights may use (0: what is available)")
    s.set_defaults(func=cmd_info)
    _add_generate(sub)
    _add_bench(sub)
    _add_download(sub)
    try:  # the convert command lives in ggmlpy.convert (optional at this level)
        from .convert.cli import add_subparser
    except ImportError:
        pass
    else:
        add_subparser(sub)
    from .quantize import add_subparser as add_quantize
    add_quantize(sub)
    from .cli_chat import add_subparser as add_chat
    add_chat(sub)
    from .quality.cli import add_subparser as add_perplexity
    add_perplexity(sub)
    from .lora.cli import add_subparser as add_export_lora
    add_export_lora(sub)
    from .training.cli import add_subparsers as add_training
    add_training(sub)
    from .server.cli import add_subparser as add_serve   # imports the server extra only when run
    add_serve(sub)
    return p


def _error_types():
    types = [CliError, OSError, ValueError]
    try:
        from . import _core
        types += [_core.GGUFError, _core.ContextFullError]
    except ImportError:
        pass
    return tuple(types)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"ggmlpy: warning: {message}\n"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:       # `ggmlpy` alone: the usage and the commands
        parser.print_help()
        return 1
    warnings.formatwarning = _format_warning
    try:
        return args.func(args)
    except KeyboardInterrupt:
        sys.stderr.write("ggmlpy: interrupted\n")
        return 130
    except _error_types() as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, OSError) and e.strerror and e.filename:
            msg = f"{e.strerror}: {e.filename}"
        sys.stderr.write(f"ggmlpy: error: {msg}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
