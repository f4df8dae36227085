"""Prometheus metrics, in a registry of the app's own (not prometheus_client's global one), so
two apps in one process (tests) never share counters."""
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)

#: Route labels are the app's known paths; anything else is "other", so scanning random URLs
#: cannot grow the label set without bound.
KNOWN_ROUTES = ("/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions",
                "/v1/embeddings")


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        disable_created_metrics()     # the *_created series double the output and say little here
        r = self.registry = CollectorRegistry()
        self.requests = Counter("ggmlpy_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=r)
        self.duration = Histogram("ggmlpy_request_duration_seconds", "Time to the end of the response, by route",
                                  ["route"], registry=r,
                                  buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.prompt_tokens = Counter("ggmlpy_prompt_tokens", "Prompt tokens evaluated", registry=r)
        self.completion_tokens = Counter("ggmlpy_completion_tokens", "Tokens generated", registry=r)
        self.cancelled = Counter("ggmlpy_generations_cancelled", "Generations stopped because the client left",
                                 registry=r)
        self.rejected = Counter("ggmlpy_requests_rejected", "Requests answered 503 because the queue was full",
                                registry=r)
        self.queue_depth = Gauge("ggmlpy_queue_depth", "Requests waiting for a generation slot", registry=r)
        self.in_flight = Gauge("ggmlpy_requests_in_flight", "Generations running now", registry=r)
        self.tokens_per_second = Gauge("ggmlpy_tokens_per_second",
                                       "Generation speed of the last finished request (tokens/s after the "
                                       "first token)", registry=r)

    @staticmethod
    def route_label(path: str) -> str:
        return path if path in KNOWN_ROUTES else "other"

    def render(self) -> bytes:
        return generate_latest(self.registry)
