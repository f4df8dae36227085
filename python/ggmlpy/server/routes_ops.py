"""/health (liveness and load, for load balancers and the tests' start-up wait), /metrics
(Prometheus text format) and the web chat page at / (static files in web/, no build step)."""
from pathlib import Path

from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parent / "web"


async def health(request):
    e = request.app.state.engine
    return JSONResponse({"status": "ok", "model": e.model_id, "generating": e.running, "waiting": e.waiting,
                         "queue_size": e.queue_size})


async def metrics(request):
    m = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)


async def index(request):
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/", index, methods=["GET"]),
    Mount("/static", StaticFiles(directory=WEB), name="static"),
]
