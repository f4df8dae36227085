"""The model behind the routes: admission (a bounded queue in front of a fixed number of
generation slots) and running the model's blocking iterators in worker threads.

Threading: the event loop never runs model code. Each step of a generation (`next()` on the
iterator create_*_completion returns) runs in a worker thread via anyio.to_thread, so the loop
keeps serving /health, /metrics and new requests while tokens are computed. A Model serializes
its own calls (an RLock, taken per token by streaming iterators). With `parallel` slots > 1 the
Model runs continuous batching (Model.start_batching, `ggmlpy serve --parallel N`): the slots'
generations are stepped together, one forward pass per token for all of them, each on its own
sequence of the KV cache. The default is 1 slot and a queue: requests run one after the other.

Cancellation: a request's iterator is advanced only while its client is there. When the client
goes (the stream's send fails, or a non-streaming request sees http.disconnect between tokens),
the iterator is closed between two tokens, its slot is released, and the next request starts."""
import asyncio
import contextlib
import time

import anyio
import anyio.to_thread

from .errors import APIError

_DONE = object()


class Engine:
    def __init__(self, model, model_id: str, metrics, parallel: int = 1, queue_size: int = 16):
        self.model = model
        self.model_id = model_id
        self.metrics = metrics
        self.parallel = parallel
        self.queue_size = queue_size
        self.created = int(time.time())
        self.waiting = 0
        self.running = 0
        self._sem = None

    def _semaphore(self) -> asyncio.Semaphore:
        # made on first use, inside the server's event loop
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.parallel)
        return self._sem

    @contextlib.asynccontextmanager
    async def slot(self):
        """Holds one generation slot; waits in the queue for it, or 503 when the queue is full."""
        sem = self._semaphore()
        if self.running + self.waiting >= self.parallel + self.queue_size:
            self.metrics.rejected.inc()
            raise APIError(503, f"the server is busy ({self.running} generating, {self.waiting} waiting, "
                                f"queue size {self.queue_size}); retry later", code="server_overloaded",
                           headers={"Retry-After": "1"})
        self.waiting += 1
        self.metrics.queue_depth.set(self.waiting)
        try:
            await sem.acquire()
        finally:
            self.waiting -= 1
            self.metrics.queue_depth.set(self.waiting)
        self.running += 1
        self.metrics.in_flight.set(self.running)
        try:
            yield
        finally:
            self.running -= 1
            self.metrics.in_flight.set(self.running)
            sem.release()

    @staticmethod
    async def call(fn, *args):
        """fn(*args) in a worker thread; TypeError / ValueError (the library's bad-input errors,
        which name the parameter) become a 400."""
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args))
        except (TypeError, ValueError) as e:
            raise APIError(400, str(e), code="invalid_value") from None

    async def iterate(self, it, prompt_tokens: int, disconnected=None):
        """Yields the items of the blocking iterator `it` (create_*_completion chunks), each
        next() in a worker thread. disconnected: an async callable checked between items (for
        non-streaming requests; streams notice a gone client when sending fails). Counts tokens
        and speed in the metrics, including for a generation cut short."""
        usage, pieces, t_first, finished, failed = None, 0, None, False, False
        try:
            while True:
                try:
                    item = await anyio.to_thread.run_sync(next, it, _DONE)
                except Exception:
                    failed = True
                    raise
                if item is _DONE:
                    finished = True
                    return
                if item.get("usage"):
                    usage = item["usage"]
                if _has_text(item):
                    pieces += 1
                    if t_first is None:
                        t_first = time.perf_counter()
                yield item
                if disconnected is not None and await disconnected():
                    return
        finally:
            if not finished:
                if not failed:
                    self.metrics.cancelled.inc()
                # close between two tokens, in a thread, shielded: the generator is suspended
                # (no lock held), and the close must happen even while this task is cancelled
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(getattr(it, "close", lambda: None))
            done = usage["completion_tokens"] if usage else pieces
            self.metrics.prompt_tokens.inc(usage["prompt_tokens"] if usage else prompt_tokens)
            self.metrics.completion_tokens.inc(done)
            if t_first is not None and done > 1:
                dt = time.perf_counter() - t_first
                if dt > 0:
                    self.metrics.tokens_per_second.set((done - 1) / dt)


def _has_text(chunk) -> bool:
    for c in chunk.get("choices", ()):
        if c.get("text") or (c.get("delta") or {}).get("content"):
            return True
    return False
