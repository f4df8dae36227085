"""`ggmlpy serve`: an OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions,
/v1/embeddings, /v1/models), /health, /metrics and a web chat page at /. Needs the `server`
extra (pip install "ggmlpy[server]"). Layout: app.py builds the app, routes_openai.py and
routes_ops.py hold the routes, engine.py the queue and worker threads, errors.py the OpenAI
error shape, params.py request checking, sse.py streaming, cli.py the subcommand."""
__all__ = ["ServerConfig", "create_app"]


def __getattr__(name):
    # lazy, so `ggmlpy --help` and the CLI's parser work without the server extra installed
    if name in __all__:
        from . import app
        return getattr(app, name)
    raise AttributeError(name)
