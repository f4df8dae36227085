"""Request bodies: read with a size limit, parsed as a JSON object, and each field checked for
type and range before any work starts, so bad input is a 400 naming the parameter (never a 500)."""
import json
import math
from typing import Any, Dict, List, Optional

from .errors import APIError, bad_param

_MISSING = object()


async def read_json(request, max_bytes: int) -> Dict[str, Any]:
    """The body as a dict. 413 past max_bytes (checked on Content-Length and again while reading,
    as a chunked body has no length); 400 for anything but a JSON object."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise _too_large(max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise APIError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(body).__name__}",
                       code="invalid_json")
    return body


def _too_large(max_bytes):
    return APIError(413, f"the request body is larger than {max_bytes} bytes (raise --max-body-size)",
                    code="request_too_large")


class Fields:
    """Typed getters over a request body; each raises a 400 naming the field."""

    def __init__(self, body: Dict[str, Any]):
        self.body = body

    def _get(self, name, default):
        v = self.body.get(name, _MISSING)
        return default if v is _MISSING or v is None else v

    def number(self, name, default, lo=-math.inf, hi=math.inf, lo_open=False, hi_open=False):
        v = self._get(name, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise bad_param(name, f"'{name}' must be a number, got {json.dumps(v)}", "invalid_type")
        if (v < lo or (lo_open and v == lo)) or (v > hi or (hi_open and v == hi)):
            lb, hb = "(" if lo_open else "[", ")" if hi_open else "]"
            raise bad_param(name, f"'{name}' = {v} is out of range, expected a number in {lb}{lo}, {hi}{hb}")
        return float(v)

    def integer(self, name, default, lo=None, hi=None):
        v = self._get(name, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad_param(name, f"'{name}' must be an integer, got {json.dumps(v)}", "invalid_type")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise bad_param(name, f"'{name}' = {v} is out of range, expected an integer {rng}")
        return v

    def boolean(self, name, default):
        v = self._get(name, default)
        if not isinstance(v, bool):
            raise bad_param(name, f"'{name}' must be true or false, got {json.dumps(v)}", "invalid_type")
        return v

    def string(self, name, default):
        v = self._get(name, default)
        if v is not None and not isinstance(v, str):
            raise bad_param(name, f"'{name}' must be a string, got {json.dumps(v)}", "invalid_type")
        return v

    def obj(self, name):
        v = self._get(name, None)
        if v is not None and not isinstance(v, dict):
            raise bad_param(name, f"'{name}' must be an object, got {json.dumps(v)}", "invalid_type")
        return v

    def stop(self) -> Optional[List[str]]:
        v = self._get("stop", None)
        if v is None:
            return None
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v) or len(v) > 16:
            raise bad_param("stop", "'stop' must be a non-empty string or a list of up to 16 non-empty strings",
                            "invalid_type")
        return v

    def unsupported(self, name, ok):
        """A field whose only accepted values are those `ok(value)` allows (OpenAI features the
        server does not have: n > 1, logprobs, tools, ...)."""
        v = self._get(name, None)
        if v is not None and not ok(v):
            raise bad_param(name, f"'{name}' = {json.dumps(v)} is not supported by this server", "unsupported")


def sampling(f: Fields) -> Dict[str, Any]:
    """Sampling fields shared by completions and chat completions, as create_*_completion's
    keyword arguments. Absent fields keep ggmlpy's defaults (temperature 0.8, top_p 0.95, ...)."""
    out = dict(
        temperature=f.number("temperature", 0.8, 0, 2),
        top_p=f.number("top_p", 0.95, 0, 1, lo_open=True),
        top_k=f.integer("top_k", 40, 0, 2**31 - 1),
        min_p=f.number("min_p", 0.05, 0, 1),
        repeat_penalty=f.number("repeat_penalty", 1.0, 0, math.inf, lo_open=True),
        frequency_penalty=f.number("frequency_penalty", 0.0, -2, 2),
        presence_penalty=f.number("presence_penalty", 0.0, -2, 2),
        seed=f.integer("seed", None, -2**63, 2**63 - 1),
        stop=f.stop(),
        typical_p=f.number("typical_p", 1.0, 0, 1, lo_open=True),
        mirostat_mode=f.integer("mirostat", 0, 0, 2),          # llama.cpp's server names
        mirostat_tau=f.number("mirostat_tau", 5.0, 0, 100, lo_open=True),
        mirostat_eta=f.number("mirostat_eta", 0.1, 0, 1),
        dry_multiplier=f.number("dry_multiplier", 0.0, 0, 100),
        dry_base=f.number("dry_base", 1.75, 1, 10),
        dry_allowed_length=f.integer("dry_allowed_length", 2, 1, 1024),
        dry_penalty_last_n=f.integer("dry_penalty_last_n", -1, -1, 2**31 - 1),
    )
    f.unsupported("n", lambda v: v == 1)
    f.unsupported("best_of", lambda v: v == 1)
    return out


def logit_bias(f: Fields, n_vocab: int):
    """OpenAI's logit_bias: {"token id": bias in [-100, 100]}, or None."""
    v = f.obj("logit_bias")
    if not v:
        return None
    out = {}
    for k, b in v.items():
        if not (k.isdigit() and int(k) < n_vocab):
            raise bad_param("logit_bias", f"'logit_bias' key {json.dumps(k)} is not a token id in [0, {n_vocab})")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not -100 <= b <= 100:
            raise bad_param("logit_bias", f"'logit_bias[\"{k}\"]' = {json.dumps(b)}, expected a number in [-100, 100]")
        out[int(k)] = float(b)
    return out


def max_tokens(f: Fields, default) -> Optional[int]:
    # max_completion_tokens is the newer OpenAI name of max_tokens; either may be sent
    v = f.integer("max_completion_tokens", None, 0)
    return v if v is not None else f.integer("max_tokens", default, 0)


def stream_options(f: Fields, stream: bool) -> bool:
    """include_usage: OpenAI sends usage in one extra final chunk only when asked."""
    opts = f.obj("stream_options")
    if opts is None:
        return False
    if not stream:
        raise bad_param("stream_options", "'stream_options' is only allowed with 'stream': true")
    inc = opts.get("include_usage", False)
    if not isinstance(inc, bool):
        raise bad_param("stream_options", "'stream_options.include_usage' must be true or false", "invalid_type")
    return inc
