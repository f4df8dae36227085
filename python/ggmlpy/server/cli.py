"""`ggmlpy serve`: loads one model and serves it over HTTP until Ctrl-C / SIGTERM."""
import os
import sys

from ..cli import CliError, _add_model_flags, _check, _check_model_flags, _resolve_model


def add_subparser(sub):
    s = sub.add_parser("serve", help="OpenAI-compatible HTTP server and web chat page",
                       description="Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, "
                                   "/v1/completions, /v1/embeddings, /v1/models), with /health, /metrics and "
                                   "a web chat page at /.")
    _add_model_flags(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    s.add_argument("--port", type=int, default=8080, help="TCP port")
    s.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on /v1/* (default: $GGMLPY_API_KEY, else none)")
    s.add_argument("--cors-origin", action="append", default=[],
                   help="allow browser requests from this origin (repeatable; '*': any); default: CORS off")
    s.add_argument("--parallel", type=int, default=1,
                   help="generations at once; more than 1 run batched (continuous batching: one forward "
                        "pass per step for all of them; the KV cache holds parallel + 1 sequences of -c each)")
    s.add_argument("--queue-size", type=int, default=16,
                   help="requests that may wait for a generation; more are answered 503")
    s.add_argument("--max-body-size", type=int, default=8 * 2**20, help="largest request body in bytes (413)")
    s.add_argument("--alias", default=None, help="model name for /v1/models and requests (default: the file name)")
    s.add_argument("--draft", default=None,
                   help="speculative decoding (with --parallel 1): 'prompt-lookup' or a draft model GGUF with the "
                        "same vocabulary; replies are the same, only faster")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level ('warning': no access log)")
    s.set_defaults(func=cmd_serve)


def cmd_serve(a) -> int:
    _check_model_flags(a)
    _check(0 <= a.port <= 65535, "--port", a.port, "an int in [0, 65535]")
    _check(a.parallel >= 1, "--parallel", a.parallel, "an int >= 1")
    _check(a.queue_size >= 0, "--queue-size", a.queue_size, "an int >= 0")
    _check(a.max_body_size >= 1024, "--max-body-size", a.max_body_size, "an int >= 1024")
    if a.draft is not None and a.parallel > 1:
        raise CliError("--draft works with --parallel 1 (the batch engine decodes without drafts)")
    try:
        import uvicorn
        from .app import ServerConfig, create_app
    except ImportError as e:
        raise CliError(f"the server needs its extra: pip install 'ggmlpy[server]' ({e})")
    api_key = a.api_key if a.api_key is not None else os.environ.get("GGMLPY_API_KEY") or None
    from ..model import Model
    path = _resolve_model(a.model)
    model = Model(path, n_ctx=a.ctx_size, n_threads=a.threads, n_batch=a.batch_size,
                  use_mmap=not a.no_mmap, use_mlock=a.mlock, mem_budget=a.mem_budget, lora=a.lora, n_seq_max=a.parallel + 1 if a.parallel > 1 else 1,
                  kv_type=a.kv_type)
    draft = None
    try:
        if a.draft is not None:
            if a.draft != "prompt-lookup":
                draft = Model(a.draft, n_ctx=model.n_ctx, n_threads=a.threads)
            model._drafter = model._make_drafter(draft if draft is not None else a.draft)
        if a.parallel > 1:
            model.start_batching()
        app = create_app(model, ServerConfig(api_key=api_key, cors_origins=a.cors_origin, parallel=a.parallel,
                                             queue_size=a.queue_size, max_body_bytes=a.max_body_size,
                                             model_id=a.alias))
        print(f"ggmlpy: serving {os.path.basename(path)} (n_ctx {model.n_ctx}) on http://{a.host}:{a.port}/"
              f"{' (API key required)' if api_key else ''}", file=sys.stderr)
        uvicorn.run(app, host=a.host, port=a.port, log_level=a.log_level, timeout_graceful_shutdown=5)
    finally:
        model.close()
        if draft is not None:
            draft.close()
    return 0
