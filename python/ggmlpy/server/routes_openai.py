"""/v1/models, /v1/completions, /v1/chat/completions, /v1/embeddings: the OpenAI API over one
Model. Parameters are checked (400 naming the field) before a request takes a place in the queue;
generation runs in worker threads (engine.py)."""
import base64
import contextlib

import numpy as np
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import chat as chatlib
from .errors import APIError, bad_param
from .params import Fields, logit_bias, max_tokens, read_json, sampling, stream_options
from .sse import SSEResponse, events


def _engine(request):
    return request.app.state.engine


async def _body(request):
    return Fields(await read_json(request, request.app.state.config.max_body_bytes))


def _check_model(f: Fields, engine):
    name = f.string("model", None)
    if name is not None and name not in (engine.model_id, engine.model.model_path):
        raise APIError(404, f"the model '{name}' does not exist; this server serves '{engine.model_id}' "
                            "(GET /v1/models)", param="model", code="model_not_found")


def _context_check(engine, n_prompt: int, n_new, param: str):
    n_ctx = engine.model.n_ctx
    if n_prompt + (n_new or 0) > n_ctx:
        what = f"{n_prompt} prompt tokens" + (f" + {n_new} max_tokens" if n_new else "")
        raise APIError(400, f"this model's context is {n_ctx} tokens, but the request needs {what}: "
                            "shorten the prompt or lower max_tokens", param=param,
                       code="context_length_exceeded")


async def models(request):
    e = _engine(request)
    return JSONResponse({"object": "list", "data": [
        {"id": e.model_id, "object": "model", "created": e.created, "owned_by": "ggmlpy",
         "meta": {"n_ctx": e.model.n_ctx, "n_vocab": e.model.n_vocab, "arch": e.model.arch}}]})


# ---- completions / chat completions ------------------------------------------------------------

def _messages(value):
    """OpenAI messages -> ggmlpy's (str content): content given as a list of parts is joined
    when every part is text; other parts (images, audio) are refused."""
    if not isinstance(value, list):
        raise bad_param("messages", "'messages' must be a list of {role, content} objects", "invalid_type")
    out = []
    for i, m in enumerate(value):
        if isinstance(m, dict) and isinstance(m.get("content"), list):
            parts = m["content"]
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in parts):
                raise bad_param("messages", f"messages[{i}].content: only text parts are supported", "unsupported")
            m = dict(m, content="".join(p["text"] for p in parts))
        out.append(m)
    try:
        return chatlib.check_messages(out)
    except (TypeError, ValueError) as e:
        raise bad_param("messages", str(e), "invalid_type" if isinstance(e, TypeError) else "invalid_value")


def _prompt(value, model):
    """An OpenAI completions prompt (a string, token ids, or a one-element list of either) as a
    str or list of ids, and its length in tokens."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
        value = value[0]
    if isinstance(value, str):
        return value, len(model.tokenize(value))
    if isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        if any(t < 0 or t >= model.n_vocab for t in value):
            raise bad_param("prompt", f"'prompt' token ids must be in [0, {model.n_vocab})")
        return value, len(value)
    if isinstance(value, list) and len(value) > 1:
        raise bad_param("prompt", "'prompt': one prompt per request (this server generates one choice)",
                        "unsupported")
    raise bad_param("prompt", "'prompt' must be a string or a list of token ids", "invalid_type")


async def _generate(request, engine, stream: bool, include_usage: bool, start, n_prompt: int,
                    assemble):
    """Takes a slot, starts the model iterator (start() in a thread), then streams SSE or returns
    the assembled JSON. The slot is released when the generation ends or the client leaves."""
    stack = contextlib.AsyncExitStack()
    await stack.enter_async_context(engine.slot())
    try:
        if await request.is_disconnected():       # gave up while queued
            raise APIError(499, "client closed the request", code="client_closed")
        it = await engine.call(start)
    except BaseException:
        await stack.aclose()
        raise
    if stream:
        return SSEResponse(events(_stream_chunks(engine, it, n_prompt, include_usage)), cleanup=stack.aclose)
    try:
        chunks = [c async for c in engine.iterate(it, n_prompt, request.is_disconnected)]
    finally:
        await stack.aclose()
    if await request.is_disconnected():     # cut short: nobody reads the answer (nginx's 499)
        return Response(status_code=499)
    return JSONResponse(assemble(chunks))


async def _stream_chunks(engine, it, n_prompt, include_usage):
    """The model's chunks as OpenAI streams them: our model name; usage only in one extra final
    chunk (choices: []) and only when stream_options.include_usage asked for it."""
    inner = engine.iterate(it, n_prompt)
    try:
        usage, last = None, None
        async for c in inner:
            c = dict(c, model=engine.model_id)
            usage = c.pop("usage", None) or usage
            last = c
            yield c
        if include_usage and last is not None:
            yield dict(last, choices=[], usage=usage)
    finally:
        await inner.aclose()


def _constraints(f: Fields):
    """response_format (OpenAI: {"type": "json_object"} or {"type": "json_schema", "json_schema":
    {...}}) and grammar (GBNF text, as llama.cpp's server takes it) for create_*_completion, which
    compile them into a grammar that constrains sampling. {"type": "text"} is the default."""
    out = {}
    rf = f.obj("response_format")
    if rf is not None and rf.get("type") != "text":
        if rf.get("type") not in ("json_object", "json_schema"):
            raise bad_param("response_format",
                            "'response_format.type' must be 'text', 'json_object' or 'json_schema'")
        out["response_format"] = rf
    grammar = f.string("grammar", None)
    if grammar is not None:
        out["grammar"] = grammar
    return out


async def _run_constrained(generate, kwargs):
    """_generate, naming the field when a schema or grammar the compiler refuses is found (when
    generation starts; every other field was checked before)."""
    try:
        return await generate()
    except APIError as e:
        if e.status == 400 and e.param is None:
            e.param = "grammar" if "grammar" in kwargs else "response_format" if "response_format" in kwargs else None
        raise


async def chat_completions(request):
    engine, model = _engine(request), _engine(request).model
    f = await _body(request)
    _check_model(f, engine)
    if "messages" not in f.body:
        raise bad_param("messages", "'messages' is required", "missing_required_parameter")
    messages = _messages(f.body["messages"])
    kwargs = sampling(f)
    kwargs["max_tokens"] = max_tokens(f, None)
    kwargs["logit_bias"] = logit_bias(f, model.n_vocab)
    kwargs["logprobs"] = f.boolean("logprobs", False)
    kwargs["top_logprobs"] = f.integer("top_logprobs", None, 0, 20)
    if kwargs["top_logprobs"] is not None and not kwargs["logprobs"]:
        raise bad_param("top_logprobs", "'top_logprobs' needs 'logprobs': true")
    f.unsupported("tools", lambda v: v == [])
    f.unsupported("tool_choice", lambda v: v == "none")
    kwargs.update(_constraints(f))
    stream = f.boolean("stream", False)
    include_usage = stream_options(f, stream)

    def count():
        return len(chatlib.prompt_ids(model, model.apply_chat_template(messages)))
    try:
        n_prompt = await engine.call(count)
    except APIError as e:
        raise bad_param("messages", e.message) from None
    _context_check(engine, n_prompt, kwargs["max_tokens"], "messages")

    def assemble(chunks):
        last = chunks[-1] if chunks else {}
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        lp = None
        if kwargs["logprobs"]:
            lp = {"content": [e for c in chunks if c["choices"] and c["choices"][0]["logprobs"]
                              for e in c["choices"][0]["logprobs"]["content"]]}
        return {"id": last.get("id"), "object": "chat.completion", "created": last.get("created"),
                "model": engine.model_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": lp, "finish_reason": last["choices"][0]["finish_reason"]}],
                "usage": last.get("usage")}
    return await _run_constrained(lambda: _generate(
        request, engine, stream, include_usage, lambda: model.create_chat_completion(messages, stream=True, **kwargs),
        n_prompt, assemble), kwargs)


async def completions(request):
    engine, model = _engine(request), _engine(request).model
    f = await _body(request)
    _check_model(f, engine)
    kwargs = sampling(f)
    kwargs["max_tokens"] = max_tokens(f, 16)
    kwargs["logit_bias"] = logit_bias(f, model.n_vocab)
    kwargs["logprobs"] = f.integer("logprobs", None, 0, 20)
    kwargs["echo"] = f.boolean("echo", False)
    f.unsupported("suffix", lambda v: v == "")
    kwargs.update(_constraints(f))
    stream = f.boolean("stream", False)
    include_usage = stream_options(f, stream)
    prompt, n_prompt = await engine.call(lambda: _prompt(f.body.get("prompt", ""), model))
    _context_check(engine, n_prompt, kwargs["max_tokens"], "prompt")

    def assemble(chunks):
        last = chunks[-1] if chunks else {}
        lp = None
        if kwargs["logprobs"] is not None:
            lp = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
            for c in chunks:
                part = c["choices"][0]["logprobs"] if c["choices"] else None
                for k in lp if part else ():
                    lp[k] += part[k]
        return {"id": last.get("id"), "object": "text_completion", "created": last.get("created"),
                "model": engine.model_id,
                "choices": [{"text": "".join(c["choices"][0]["text"] for c in chunks), "index": 0,
                             "logprobs": lp, "finish_reason": last["choices"][0]["finish_reason"]}],
                "usage": last.get("usage")}
    return await _run_constrained(lambda: _generate(
        request, engine, stream, include_usage, lambda: model.create_completion(prompt, stream=True, **kwargs),
        n_prompt, assemble), kwargs)


# ---- embeddings --------------------------------------------------------------------------------

async def embeddings(request):
    engine, model = _engine(request), _engine(request).model
    f = await _body(request)
    _check_model(f, engine)
    texts = f.body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad_param("input", "'input' must be a string or a non-empty list of strings", "invalid_type")
    if len(texts) > 2048:
        raise bad_param("input", f"'input' has {len(texts)} texts, at most 2048 per request")
    fmt = f.string("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise bad_param("encoding_format", "'encoding_format' must be 'float' or 'base64'")
    dims = f.integer("dimensions", None, 1)
    # counted as Model.embed tokenizes (special tokens as plain text)
    counts = await engine.call(lambda: [len(model.tokenize(t, special=False)) for t in texts])
    for i, n in enumerate(counts):
        if n > model.n_ctx:
            raise APIError(400, f"input[{i}] is {n} tokens, longer than this model's context ({model.n_ctx} "
                                "tokens)", param="input", code="context_length_exceeded")
    async with engine.slot():
        vecs = await engine.call(lambda: np.asarray(model.embed(texts, pooling="mean", normalize=True),
                                                    dtype=np.float32))
    if dims is not None and dims != vecs.shape[1]:
        raise bad_param("dimensions", f"'dimensions' = {dims}: this model's embeddings have {vecs.shape[1]}")
    engine.metrics.prompt_tokens.inc(sum(counts))

    def encode(v):
        if fmt == "base64":       # little-endian float32 bytes, as the OpenAI API sends them
            return base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
        return v.tolist()
    return JSONResponse({"object": "list", "model": engine.model_id,
                         "data": [{"object": "embedding", "index": i, "embedding": encode(v)}
                                  for i, v in enumerate(vecs)],
                         "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}})


routes = [
    Route("/v1/models", models, methods=["GET"]),
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
]
