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
    """A StreamingResponse that always closes its body generator, then runs cleanup (which frees
    the generation slot), when the response ends: when the client leaves, Starlette stops
    iterating but leaves an async generator suspended, and if the first send already fails the
    generator never starts, so its own finally would never run."""

    def __init__(self, body, cleanup):
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._cleanup = cleanup

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
                await self._cleanup()


async def events(chunks):
    """SSE text for an async iterator of chunk dicts, ending with [DONE]; an error after the
    stream started (the status is already sent) becomes one `data: {"error": ...}` event."""
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
