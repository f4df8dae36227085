"""Server-sent events as OpenAI streams them: `data: {json}\n\n` per chunk, then `data: [DONE]`."""
import json
import logging

import anyio
from starlette.responses import StreamingResponse

from .errors import APIError

log = logging.getLogger("ggmlpy.server")


def event(obj) -> str:
    return "data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n\n"


DONE = "data: [DONE]\n\n"


class SSEResponse(StreamingResponse):
    """A StreamingResponse that always closes its body generator when the response ends: when
    the client leaves, Starlette stops iterating but leaves an async generator suspended, and
    ours holds a generation slot and a model iterator until it is closed."""

    def __init__(self, body, headers=None):
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})})

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()


async def events(chunks, cleanup):
    """SSE text for an async iterator of chunk dicts, ending with [DONE]; an error after the
    stream started (the status is already sent) becomes one `data: {"error": ...}` event.
    cleanup (an async callable) runs last, however the stream ends."""
    try:
        try:
            async for c in chunks:
                yield event(c)
        except APIError as e:
            yield event(e.body())
            return
        except Exception:
            log.exception("generation failed mid-stream")
            yield event(APIError(500, "internal error while generating; see the server log",
                                 code="internal_error").body())
            return
        yield DONE
    finally:
        with anyio.CancelScope(shield=True):
            await chunks.aclose()
            await cleanup()
