"""`ggmlpy serve` through the official OpenAI client and raw HTTP: results equal the library's
(greedy), streams equal plain replies, concurrent clients get their own complete replies, bad
input gets the OpenAI error shape and status, a full queue answers 503, a client that leaves stops
its generation, and /metrics counts it all."""
import json
import threading
import time

import httpx
import numpy as np
import openai
import pytest

from server_proc import run_server

CHAT = [{"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"}]
GREEDY = dict(temperature=0, max_tokens=20)


@pytest.fixture(scope="module")
def server(smollm2_path):
    with run_server(smollm2_path) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def model(smollm2_path):
    from ggmlpy import Model
    with Model(str(smollm2_path), n_ctx=1024, n_threads=1) as m:
        yield m


def _post(server, path, body=None, content=None, headers=None):
    return httpx.post(server.base_url + path, json=body, content=content, headers=headers, timeout=120)


def _error(r, status, code=None, param=None):
    """r is an OpenAI-shaped error with this status (and code / param when given)."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"], err
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err


# ---- the API through the openai client --------------------------------------------------------

def test_models_list(client, server, smollm2_path):
    models = client.models.list().data
    assert [m.id for m in models] == [smollm2_path.name]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_chat_completion_equals_library_and_stream(client, model):
    want = model.create_chat_completion(CHAT, **GREEDY)["choices"][0]["message"]["content"]
    r = client.chat.completions.create(model=model.model_path.split("/")[-1], messages=CHAT, **GREEDY)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == want and want.strip()
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    chunks = list(client.chat.completions.create(model=r.model, messages=CHAT, stream=True,
                                                 stream_options={"include_usage": True}, **GREEDY))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == r.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])     # usage only in the extra last chunk


def test_completion_equals_library_and_stream(client, model):
    prompt = "The three primary colors are"
    want = model.create_completion(prompt, max_tokens=12, temperature=0)["choices"][0]["text"]
    r = client.completions.create(model=r_model(client), prompt=prompt, max_tokens=12, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text == want and want.strip()
    assert r.usage.prompt_tokens == len(model.tokenize(prompt))
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=r.model, prompt=prompt, max_tokens=12, temperature=0, stream=True))
    assert streamed == want
    # token ids as the prompt give the same text
    ids = model.tokenize(prompt)
    assert client.completions.create(model=r.model, prompt=ids, max_tokens=12, temperature=0).choices[0].text == want


def r_model(client):
    return client.models.list().data[0].id


def test_logprobs_and_logit_bias_through_openai_client(client, model):
    """OpenAI's logprobs shapes, read by the official client, equal the library's (which equal
    log_softmax of the model's logits: test_sampling_hooks.py), streamed or not."""
    want = model.create_chat_completion(CHAT, logprobs=True, top_logprobs=3, **GREEDY)["choices"][0]["logprobs"]
    r = client.chat.completions.create(model=r_model(client), messages=CHAT, logprobs=True, top_logprobs=3, **GREEDY)
    got = r.choices[0].logprobs.content
    assert [e.token for e in got] == [e["token"] for e in want["content"]] and got
    assert [e.logprob for e in got] == pytest.approx([e["logprob"] for e in want["content"]], abs=1e-6)
    assert [[t.token for t in e.top_logprobs] for e in got] == \
        [[t["token"] for t in e["top_logprobs"]] for e in want["content"]]
    chunks = client.chat.completions.create(model=r.model, messages=CHAT, logprobs=True, top_logprobs=3,
                                            stream=True, **GREEDY)
    streamed = [e.token for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert streamed == [e.token for e in got]

    prompt = "The three primary colors are"
    want = model.create_completion(prompt, max_tokens=6, temperature=0, logprobs=2, echo=True)["choices"][0]
    c = client.completions.create(model=r.model, prompt=prompt, max_tokens=6, temperature=0, logprobs=2, echo=True)
    assert c.choices[0].text == want["text"] and c.choices[0].text.startswith(prompt)
    assert c.choices[0].logprobs.tokens == want["logprobs"]["tokens"]
    assert c.choices[0].logprobs.text_offset == want["logprobs"]["text_offset"]
    assert c.choices[0].logprobs.token_logprobs[0] is None
    assert c.choices[0].logprobs.token_logprobs[1:] == pytest.approx(want["logprobs"]["token_logprobs"][1:], abs=1e-6)

    # llama.cpp's server sampling fields: the same text as the library with the same seed
    kw = dict(max_tokens=8, temperature=0.9, seed=5)
    for extra, lib in (({"mirostat": 2, "mirostat_tau": 4.0}, {"mirostat_mode": 2, "mirostat_tau": 4.0}),
                       ({"typical_p": 0.6}, {"typical_p": 0.6})):
        want = model.create_completion(prompt, **kw, **lib)["choices"][0]["text"]
        got = client.completions.create(model=r.model, prompt=prompt, extra_body=extra, **kw).choices[0].text
        assert got == want

    banana = model.tokenize(" banana", add_bos=False)[0]
    b = client.completions.create(model=r.model, prompt=prompt, max_tokens=2, temperature=0,
                                  logit_bias={str(banana): 100})
    assert b.choices[0].text == " banana banana"


def test_embeddings(client, server, model):
    texts = ["The cat sat on the mat.", "Paris is the capital of France."]
    want = model.embed(texts, pooling="mean", normalize=True)
    r = client.embeddings.create(model=r_model(client), input=texts)   # the client asks for base64
    got = np.array([d.embedding for d in r.data], dtype=np.float32)
    assert got.shape == want.shape == (2, want.shape[1])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-4)
    assert r.usage.prompt_tokens == sum(len(model.tokenize(t, special=False)) for t in texts)
    plain = _post(server, "/embeddings", {"input": texts[0], "encoding_format": "float"}).json()
    np.testing.assert_allclose(plain["data"][0]["embedding"], want[0], rtol=1e-5, atol=1e-6)
    _error(_post(server, "/embeddings", {"input": []}), 400, "invalid_type", "input")
    _error(_post(server, "/embeddings", {"input": ["ok", "word " * 1100]}), 400, "context_length_exceeded", "input")
    _error(_post(server, "/embeddings", {"input": "x", "dimensions": 3}), 400, param="dimensions")
    _error(_post(server, "/embeddings", {"input": "x", "encoding_format": "int8"}), 400, param="encoding_format")


CAPITAL_SCHEMA = {"type": "json_schema", "json_schema": {"name": "capital", "schema": {
    "type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"]}}}


def test_response_format_json_schema(client, server):
    # response_format goes to Model.create_chat_completion, whose grammar constrains the reply
    kw = dict(model=r_model(client), temperature=0, max_tokens=80, response_format=CAPITAL_SCHEMA,
              messages=[{"role": "user", "content": "Give the capital of France as JSON."}])
    r = client.chat.completions.create(**kw)
    assert r.choices[0].finish_reason == "stop"
    obj = json.loads(r.choices[0].message.content)
    assert set(obj) >= {"city", "country"} and all(isinstance(obj[k], str) for k in ("city", "country"))
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw)
                       if c.choices)
    assert streamed == r.choices[0].message.content
    r = client.chat.completions.create(**dict(kw, response_format={"type": "json_object"}))
    text = r.choices[0].message.content
    assert text.lstrip().startswith("{")      # an object, complete unless max_tokens cut it
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}}
    _error(_post(server, "/chat/completions", {"messages": CHAT, "response_format": bad}), 400,
           param="response_format")
    _error(_post(server, "/chat/completions", {"messages": CHAT, "stream": True, "response_format": bad}), 400,
           param="response_format")


def test_completion_grammar_and_response_format(server):
    body = {"prompt": "Is the sky blue? Answer:", "max_tokens": 8, "temperature": 0}
    r = _post(server, "/completions", dict(body, grammar='root ::= " yes" | " no"')).json()
    assert r["choices"][0]["text"] in (" yes", " no") and r["choices"][0]["finish_reason"] == "stop"
    r = _post(server, "/completions", dict(body, max_tokens=40, response_format={"type": "json_object"})).json()
    assert r["choices"][0]["text"].lstrip().startswith("{")
    _error(_post(server, "/completions", dict(body, grammar="root ::= (")), 400, param="grammar")
    _error(_post(server, "/completions", dict(body, grammar=5)), 400, "invalid_type", "grammar")


# ---- concurrency ------------------------------------------------------------------------------

def _ask(client, prompt, stream):
    """The greedy reply (16 tokens) to one user message, streamed or not."""
    kw = dict(model=r_model(client), messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=16)
    if not stream:
        return client.chat.completions.create(**kw).choices[0].message.content
    return "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw)
                   if c.choices)


def _streams_at_once(client, prompts):
    """Every prompt streamed by its own client thread, all at once: the replies, in order."""
    got, errors = [None] * len(prompts), []

    def worker(i):
        try:
            got[i] = _ask(client, prompts[i], True)
        except Exception as e:        # reported below with the index
            errors.append((i, repr(e)))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return got


def test_concurrent_streaming_clients(client):
    prompts = [f"Write one short sentence about the number {i}." for i in range(8)]
    alone = [_ask(client, p, False) for p in prompts]
    assert _streams_at_once(client, prompts) == alone and all(s.strip() for s in alone)


def test_batched_server_eight_streaming_clients(smollm2_path, model):
    # --parallel 8: continuous batching; 8 concurrent streaming clients through the official
    # client each get the greedy reply the library gives alone
    prompts = [f"Write one short sentence about the number {i}." for i in range(8)]
    want = [model.chat(p, temperature=0, max_tokens=16) for p in prompts]
    with run_server(smollm2_path, "--parallel", "8", "-t", "2") as s:
        client = openai.OpenAI(base_url=s.base_url, api_key="none", max_retries=0, timeout=120)
        assert _streams_at_once(client, prompts) == want and all(w.strip() for w in want)


def test_content_parts_are_joined(server):
    parts = [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of France?"}]
    as_parts = _post(server, "/chat/completions", {"messages": [CHAT[0], {"role": "user", "content": parts}],
                                                   "temperature": 0, "max_tokens": 12}).json()
    as_text = _post(server, "/chat/completions", {"messages": CHAT, "temperature": 0, "max_tokens": 12}).json()
    assert as_parts["choices"][0]["message"] == as_text["choices"][0]["message"]


def test_parallel_slots_interleave_without_mixing(smollm2_path):
    # --parallel 2: two generations run batched (continuous batching, each on its own sequence of
    # the KV cache); each must still give exactly its text alone
    with run_server(smollm2_path, "--parallel", "2") as s:
        prompts = ["The sky is", "My favourite food is", "In 1969, astronauts"]

        def ask(p):
            body = {"prompt": p, "max_tokens": 12, "temperature": 0, "stream": True}
            with httpx.stream("POST", s.base_url + "/completions", json=body, timeout=120) as r:
                return "".join(json.loads(line[6:])["choices"][0]["text"] for line in r.iter_lines()
                               if line.startswith("data: {"))
        alone = [ask(p) for p in prompts]
        got = [None] * 3
        threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, ask(prompts[i]))) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert got == alone and all(alone)


def test_queue_full_answers_503(smollm2_path):
    with run_server(smollm2_path, "--queue-size", "1") as s:
        body = {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 200, "temperature": 0, "stream": True}
        with httpx.Client(timeout=120) as http, http.stream("POST", s.base_url + "/completions", json=body) as long:
            assert long.status_code == 200
            lines = long.iter_lines()
            next(line for line in lines if line.startswith("data: "))        # generating now
            results = [None] * 4

            def short(i):
                results[i] = _post(s, "/completions", {"prompt": "Hi", "max_tokens": 2, "temperature": 0})
            threads = [threading.Thread(target=short, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            rest = [line for line in lines if line.startswith("data: ")]
            assert rest[-1] == "data: [DONE]"
        statuses = sorted(r.status_code for r in results)
        # one waits in the queue (size 1) and is served; the others are refused at once
        assert statuses == [200, 503, 503, 503], [r.text for r in results]
        for r in results:
            if r.status_code == 503:
                _error(r, 503, "server_overloaded")
                assert r.headers["retry-after"] == "1"
        m = s.metrics()
        assert m[("ggmlpy_requests_rejected_total", ())] == 3
        assert m[("ggmlpy_requests_total", (("route", "/v1/completions"), ("status", "503")))] == 3
        assert m[("ggmlpy_requests_total", (("route", "/v1/completions"), ("status", "200")))] == 2


def _wait_cancelled(server, before, timeout=10):
    """The metrics once the server counted one more cancelled generation."""
    key = ("ggmlpy_generations_cancelled_total", ())
    deadline = time.monotonic() + timeout
    while True:
        after = server.metrics()
        if after[key] == before[key] + 1:
            return after
        assert time.monotonic() < deadline, "the cancelled generation was not counted"
        time.sleep(0.1)


LONG = {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 600, "temperature": 0}


def test_client_disconnect_mid_stream_stops_generation(server):
    before = server.metrics()
    with httpx.Client(timeout=120) as http, http.stream("POST", server.base_url + "/completions",
                                                        json=dict(LONG, stream=True)) as r:
        got = 0
        for line in r.iter_lines():
            got += line.startswith("data: ")
            if got == 5:
                break          # leave mid-stream: the with blocks close the connection
    # the next request is served at once: the slot was freed, not held for 600 tokens
    t0 = time.monotonic()
    r = _post(server, "/completions", {"prompt": "Hello", "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    assert time.monotonic() - t0 < 30
    after = _wait_cancelled(server, before)
    generated = after[("ggmlpy_completion_tokens_total", ())] - before[("ggmlpy_completion_tokens_total", ())]
    assert 4 < generated < 4 + 100, generated     # stopped soon after the client left, far from 600
    assert after[("ggmlpy_requests_in_flight", ())] == 0


def test_client_disconnect_without_stream_stops_generation(server):
    before = server.metrics()
    with pytest.raises(httpx.ReadTimeout):        # the client gives up after 1 s and closes
        httpx.post(server.base_url + "/completions", json=LONG, timeout=httpx.Timeout(120, read=1.0))
    after = _wait_cancelled(server, before)
    generated = after[("ggmlpy_completion_tokens_total", ())] - before[("ggmlpy_completion_tokens_total", ())]
    assert 0 < generated < 600, generated
    assert httpx.get(server.url + "/health").json()["generating"] == 0


# ---- errors ----------------------------------------------------------------------------------

BAD = [  # (path, body or raw bytes, status, code, param)
    ("/chat/completions", b"{not json", 400, "invalid_json", None),
    ("/chat/completions", b"[1, 2]", 400, "invalid_json", None),
    ("/chat/completions", {"messages": "hi"}, 400, "invalid_type", "messages"),
    ("/chat/completions", {}, 400, "missing_required_parameter", "messages"),
    ("/chat/completions", {"messages": [{"role": "user"}]}, 400, "invalid_value", "messages"),
    ("/chat/completions", {"messages": CHAT, "temperature": "hot"}, 400, "invalid_type", "temperature"),
    ("/chat/completions", {"messages": CHAT, "temperature": 5}, 400, "invalid_value", "temperature"),
    ("/chat/completions", {"messages": CHAT, "top_p": 0}, 400, "invalid_value", "top_p"),
    ("/chat/completions", {"messages": CHAT, "max_tokens": -1}, 400, "invalid_value", "max_tokens"),
    ("/chat/completions", {"messages": CHAT, "max_tokens": 1.5}, 400, "invalid_type", "max_tokens"),
    ("/chat/completions", {"messages": CHAT, "stream": "yes"}, 400, "invalid_type", "stream"),
    ("/chat/completions", {"messages": CHAT, "stop": 3}, 400, "invalid_type", "stop"),
    ("/chat/completions", {"messages": CHAT, "n": 2}, 400, "unsupported", "n"),
    ("/chat/completions", {"messages": CHAT, "stream": True, "seed": "x"}, 400, "invalid_type", "seed"),
    ("/chat/completions", {"messages": CHAT, "model": "gpt-4"}, 404, "model_not_found", "model"),
    ("/chat/completions", {"messages": CHAT, "max_tokens": 2000}, 400, "context_length_exceeded", "messages"),
    ("/chat/completions", {"messages": [{"role": "user", "content": "word " * 1100}]}, 400,
     "context_length_exceeded", "messages"),
    ("/completions", {"prompt": {"a": 1}}, 400, "invalid_type", "prompt"),
    ("/completions", {"prompt": [1, 10**9]}, 400, "invalid_value", "prompt"),
    ("/completions", {"prompt": "x", "frequency_penalty": 3}, 400, "invalid_value", "frequency_penalty"),
    ("/completions", {"prompt": "x", "stream_options": {"include_usage": True}}, 400, None, "stream_options"),
    ("/chat/completions", b"[" * 100000 + b"]" * 100000, 400, "invalid_json", None),
    ("/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}, 400, "unsupported", "messages"),
    ("/chat/completions", {"messages": CHAT, "top_k": 2**40}, 400, "invalid_value", "top_k"),
    ("/chat/completions", {"messages": CHAT, "response_format": {"type": "xml"}}, 400, None, "response_format"),
    ("/completions", {"prompt": ["a", "b"]}, 400, "unsupported", "prompt"),
    ("/completions", {"prompt": "x", "logprobs": 21}, 400, "invalid_value", "logprobs"),
    ("/completions", {"prompt": "x", "logit_bias": {"x": 1}}, 400, None, "logit_bias"),
    ("/completions", {"prompt": "x", "logit_bias": {"5": 101}}, 400, None, "logit_bias"),
    ("/chat/completions", {"messages": CHAT, "logprobs": 2}, 400, "invalid_type", "logprobs"),
    ("/chat/completions", {"messages": CHAT, "top_logprobs": 2}, 400, None, "top_logprobs"),
    ("/embeddings", {"input": 5}, 400, "invalid_type", "input"),
    ("/nope", {}, 404, "not_found", None),
]


def test_serve_with_prompt_lookup_drafts(smollm2_path, model):
    """--draft prompt-lookup: the same replies as the library without drafts."""
    msgs = [{"role": "user", "content": "Repeat exactly: the cat sat on the mat, the cat sat on the mat."}]
    want = model.create_chat_completion(msgs, **GREEDY)["choices"][0]["message"]["content"]
    with run_server(smollm2_path, "--draft", "prompt-lookup") as s:
        c = openai.OpenAI(base_url=s.base_url, api_key="unused", max_retries=0, timeout=120)
        r = c.chat.completions.create(model=c.models.list().data[0].id, messages=msgs, **GREEDY)
        assert r.choices[0].message.content == want
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "ggmlpy", "serve", "-m", str(smollm2_path), "--draft", "prompt-lookup",
                        "--parallel", "2"], capture_output=True, text=True)
    assert r.returncode == 1 and "--draft works with --parallel 1" in r.stderr


@pytest.mark.parametrize("path,body,status,code,param", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_requests(server, path, body, status, code, param):
    if isinstance(body, bytes):
        r = _post(server, path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = _post(server, path, body)
    _error(r, status, code, param)


WEIRD = [None, True, -1, 0, 2**70, -1e300, 0.5, "", "x", [], [1], ["a"], {}, {"a": 1}, [[[]]]]
FIELDS = ["model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
          "min_p", "stop", "seed", "stream", "stream_options", "n", "logprobs", "presence_penalty",
          "frequency_penalty", "repeat_penalty", "response_format", "tools", "logit_bias", "input",
          "encoding_format", "dimensions", "echo", "suffix", "user", "grammar", "top_logprobs", "typical_p",
          "mirostat", "mirostat_tau", "mirostat_eta", "dry_multiplier", "dry_base", "dry_allowed_length",
          "dry_penalty_last_n"]


@pytest.mark.parametrize("path", ["/chat/completions", "/completions", "/embeddings"])
def test_any_field_value_is_answered_not_crashed(server, path):
    """Every field set to values of every JSON type: a 200 or a 4xx in the OpenAI shape, never a
    500 (max_tokens 1 keeps the accepted ones cheap)."""
    base = {"/chat/completions": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
            "/completions": {"prompt": "Hi", "max_tokens": 1}, "/embeddings": {"input": "Hi"}}[path]
    with httpx.Client(timeout=120) as http:
        for field in FIELDS:
            for value in WEIRD:
                r = http.post(server.base_url + path, json={**base, field: value})
                assert r.status_code in (200, 400, 404), (field, value, r.status_code, r.text)
                if r.status_code != 200:
                    _error(r, r.status_code)
                elif r.headers["content-type"].startswith("text/event-stream"):
                    assert r.text.endswith("data: [DONE]\n\n"), (field, value, r.text[-200:])


def test_errors_through_openai_client(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=r_model(client), messages=CHAT, temperature=-1)
    assert e.value.status_code == 400 and e.value.param == "temperature"
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=CHAT)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=r_model(client), prompt="x " * 2000, max_tokens=1)
    assert e.value.code == "context_length_exceeded"


def test_wrong_method_and_health_still_ok(server):
    _error(httpx.get(server.base_url + "/chat/completions"), 405, "method_not_allowed")
    assert httpx.get(server.url + "/health").status_code == 200


def test_api_key_and_body_limit(smollm2_path):
    with run_server(smollm2_path, "--max-body-size", "4096", env={"GGMLPY_API_KEY": "s3cret"}) as s:
        body = {"prompt": "Hi", "max_tokens": 2}
        _error(_post(s, "/completions", body), 401, "invalid_api_key")
        _error(_post(s, "/completions", body, headers={"Authorization": "Bearer nope"}), 401, "invalid_api_key")
        _error(httpx.get(s.base_url + "/models"), 401, "invalid_api_key")
        ok = {"Authorization": "Bearer s3cret"}
        assert _post(s, "/completions", body, headers=ok).status_code == 200
        assert httpx.get(s.url + "/health").status_code == 200 and httpx.get(s.url + "/metrics").status_code == 200
        _error(_post(s, "/completions", {"prompt": "x" * 5000}, headers=ok), 413, "request_too_large")
        # a chunked body (no Content-Length) is cut off at the limit too
        _error(_post(s, "/completions", content=iter([b'{"prompt": "', b"x" * 5000, b'"}']), headers=ok),
               413, "request_too_large")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=s.base_url, api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=s.base_url, api_key="s3cret", max_retries=0)
        assert good.models.list().data[0].id == smollm2_path.name
        assert "Traceback" not in s.log()


def test_cors_off_by_default_and_on_when_asked(server, smollm2_path):
    r = httpx.get(server.base_url + "/models", headers={"Origin": "http://example.test"})
    assert "access-control-allow-origin" not in r.headers
    with run_server(smollm2_path, "--cors-origin", "http://example.test") as s:
        r = httpx.options(s.base_url + "/chat/completions", headers={
            "Origin": "http://example.test", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://example.test"


# ---- metrics ---------------------------------------------------------------------------------

def test_metrics_count_requests_and_tokens(server):
    before = server.metrics()
    r = _post(server, "/completions", {"prompt": "Hello there", "max_tokens": 5, "temperature": 0}).json()
    _post(server, "/completions", {"prompt": 1})
    after = server.metrics()

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)
    assert delta("ggmlpy_requests_total", route="/v1/completions", status="200") == 1
    assert delta("ggmlpy_requests_total", route="/v1/completions", status="400") == 1
    assert delta("ggmlpy_prompt_tokens_total") == r["usage"]["prompt_tokens"]
    assert delta("ggmlpy_completion_tokens_total") == r["usage"]["completion_tokens"] == 5
    assert after[("ggmlpy_queue_depth", ())] == 0 and after[("ggmlpy_requests_in_flight", ())] == 0
    assert after[("ggmlpy_tokens_per_second", ())] > 0
    assert delta("ggmlpy_request_duration_seconds_count", route="/v1/completions") == 2


def test_no_traceback_in_responses_or_log(server):
    # every bad request above was answered without an internal error
    assert "Traceback" not in server.log()
    assert "ggmlpy_requests_total" in httpx.get(server.url + "/metrics").text
    m = server.metrics()
    assert not [k for k in m if k[0] == "ggmlpy_requests_total" and ("status", "500") in k[1]]


def test_sigterm_while_streaming_exits(smollm2_path):
    # uvicorn waits up to 5 s for open streams, then cancels them: the server never hangs
    with run_server(smollm2_path) as s:
        body = {"prompt": "1, 2, 3,", "max_tokens": 900, "temperature": 0, "stream": True}
        with httpx.Client(timeout=120) as http, http.stream("POST", s.base_url + "/completions", json=body) as r:
            next(line for line in r.iter_lines() if line.startswith("data: "))
            t0 = time.monotonic()
            s.proc.terminate()
            s.proc.wait(timeout=30)
            assert time.monotonic() - t0 < 20
        assert s.proc.returncode in (0, -15), s.proc.returncode
        assert "Traceback" not in s.log()


def test_serve_cli_bad_arguments(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "ggmlpy", "serve", "--port", "70000"], capture_output=True, text=True)
    assert r.returncode == 1 and "ggmlpy: error: argument --port" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ggmlpy", "serve", "-m", str(tmp_path / "missing.gguf")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "model file not found" in r.stderr
