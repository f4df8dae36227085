"""The ASGI app: routes, the OpenAI error shape for every failure, API-key check, CORS and
request metrics. `create_app(model, ServerConfig(...))` builds it; `serve()` runs it with uvicorn."""
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import List, Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from . import routes_openai, routes_ops
from .engine import Engine
from .errors import APIError
from .metrics import Metrics

log = logging.getLogger("ggmlpy.server")


@dataclass
class ServerConfig:
    api_key: Optional[str] = None            # Bearer key for /v1/* (None: open)
    cors_origins: List[str] = field(default_factory=list)   # empty: no CORS headers
    parallel: int = 1                        # generations at once (they interleave per token)
    queue_size: int = 16                     # requests that may wait for a slot; more get 503
    max_body_bytes: int = 8 * 2**20
    model_id: Optional[str] = None           # the name /v1/models lists (default: the file name)


class _MetricsMiddleware:
    """Counts every response by route and status, errors raised in the inner middleware too."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = self.metrics.route_label(scope["path"])
        status = [500]
        t0 = time.perf_counter()

        async def send_status(msg):
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - t0)


class _AuthMiddleware:
    """With an API key set, /v1/* needs `Authorization: Bearer KEY` (compared in constant time);
    /health, /metrics and the page stay open (the page sends the key the user types)."""

    def __init__(self, app, api_key: Optional[str]):
        self.app, self.key = app, api_key

    async def __call__(self, scope, receive, send):
        if (self.key and scope["type"] == "http" and scope["path"].startswith("/v1/")
                and scope["method"] != "OPTIONS"):
            auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), self.key.encode()):
                msg = ("missing API key: send 'Authorization: Bearer KEY'" if not auth
                       else "invalid API key")
                err = APIError(401, msg, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
                return await err.response()(scope, receive, send)
        await self.app(scope, receive, send)


async def _api_error(request, exc: APIError):
    return exc.response()


async def _http_error(request, exc: HTTPException):
    # Starlette's own 404 / 405, in the OpenAI shape
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    msg = f"{request.method} {request.url.path}: {exc.detail}"
    return APIError(exc.status_code, msg, code=code, headers=getattr(exc, "headers", None)).response()


async def _internal_error(request, exc: Exception):
    # the traceback goes to the server log only; the client gets the shape and no internals
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return APIError(500, "internal server error; see the server log", code="internal_error").response()


def create_app(model, config: Optional[ServerConfig] = None) -> Starlette:
    config = config or ServerConfig()
    metrics = Metrics()
    model_id = config.model_id or os.path.basename(model.model_path)
    middleware = [Middleware(_MetricsMiddleware, metrics=metrics)]
    if config.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=config.cors_origins,
                                     allow_methods=["GET", "POST", "OPTIONS"],
                                     allow_headers=["Authorization", "Content-Type"]))
    middleware.append(Middleware(_AuthMiddleware, api_key=config.api_key))
    app = Starlette(routes=routes_openai.routes + routes_ops.routes, middleware=middleware,
                    exception_handlers={APIError: _api_error, HTTPException: _http_error,
                                        Exception: _internal_error})
    app.state.config = config
    app.state.metrics = metrics
    app.state.engine = Engine(model, model_id, metrics, parallel=config.parallel, queue_size=config.queue_size)
    return app
