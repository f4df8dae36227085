"""Chat templates and the OpenAI-style chat / completion API over a `Model`.

The GGUF's `tokenizer.chat_template` (a Jinja2 template, as in the HF tokenizer_config.json) is
rendered the way HF transformers' `apply_chat_template` renders it: a sandboxed immutable Jinja2
environment with trim_blocks / lstrip_blocks and the `loopcontrols` extension; the variables
`messages`, `add_generation_prompt`, `tools`, `bos_token`, `eos_token`; the globals
`raise_exception`, `strftime_now`, `namespace`, `dict`; and a `tojson` filter that does not escape
HTML and keeps non-ASCII text (ensure_ascii=False) with indent/separators/sort_keys options.
A model without a template gets CHATML_TEMPLATE (with a warning).

Model.apply_chat_template / create_chat_completion / create_completion / chat are thin wrappers
over the functions here."""
from __future__ import annotations

import functools
import json
import os
import time
import uuid
import warnings
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

#: Used for models whose GGUF has no tokenizer.chat_template (ChatML, as SmolLM2 / Qwen / Hermes).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

#: Rendered prompts longer than this (characters) are refused: a template looping without bound
#: ends in a ValueError instead of filling the memory.
MAX_RENDERED_CHARS = 16 * 1024 * 1024
#: Seconds a template may take to render (checked between output pieces).
MAX_RENDER_SECONDS = 10.0

#: End-of-turn markers of common templates: when one is in the template, is a single token and
#: that token is not an end-of-generation token, that token also ends the reply.
END_OF_TURN_TEXTS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>")


class ChatTemplateError(ValueError):
    """A chat template failed to compile or render (raise_exception, a Jinja2 error, too large)."""


def _json_dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message):
    import jinja2
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2
    import jinja2.ext
    import jinja2.utils
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}` (HF's assistant-mask marker): renders its body."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    class Namespace(jinja2.utils.Namespace):
        """namespace() that refuses underscore attributes (no way to CPython internals)."""
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                Namespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            Namespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} starts with an underscore")

    class TemplateDict:
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _json_dumps
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["namespace"] = Namespace
    env.globals["dict"] = TemplateDict()
    return env


@functools.lru_cache(maxsize=32)
def _compile(template: str):
    import jinja2
    try:
        return _environment().from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ChatTemplateError(f"chat template syntax error at line {e.lineno}: {e.message}") from None


def check_messages(messages, name: str = "messages") -> List[Dict[str, Any]]:
    """messages as a list of dicts with str `role` and `content` (content may be None for an
    assistant message with tool_calls); TypeError / ValueError naming the bad entry."""
    if isinstance(messages, (str, bytes, dict)) or not isinstance(messages, (list, tuple)):
        raise TypeError(f"{name} must be a list of dicts with 'role' and 'content', got {type(messages).__name__}")
    if not messages:
        raise ValueError(f"{name} is empty, expected at least one message")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise TypeError(f"{name}[{i}] must be a dict with 'role' and 'content', got {type(msg).__name__}")
        if "role" not in msg:
            raise ValueError(f"{name}[{i}] has no 'role'")
        if not isinstance(msg["role"], str):
            raise TypeError(f"{name}[{i}]['role'] must be a str, got {type(msg['role']).__name__}")
        if "content" not in msg and not msg.get("tool_calls"):
            raise ValueError(f"{name}[{i}] has no 'content'")
        content = msg.get("content")
        if not isinstance(content, str) and not (content is None and msg.get("tool_calls")):
            raise TypeError(f"{name}[{i}]['content'] must be a str, got {type(content).__name__}")
        out.append(dict(msg))
    return out


def render(template: str, messages, add_generation_prompt: bool = True, tools=None,
           bos_token: str = "", eos_token: str = "", **extra) -> str:
    """The template rendered with HF's variables. Template errors (raise_exception, syntax,
    undefined operations, sandbox violations, MAX_RENDERED_CHARS / MAX_RENDER_SECONDS) are
    ChatTemplateError (a ValueError) naming the problem."""
    import jinja2
    if not isinstance(template, str):
        raise TypeError(f"chat_template must be a str, got {type(template).__name__}")
    if not isinstance(add_generation_prompt, bool):
        raise TypeError(f"add_generation_prompt must be a bool, got {type(add_generation_prompt).__name__}")
    if tools is not None and not isinstance(tools, (list, tuple)):
        raise TypeError(f"tools must be a list of dicts or None, got {type(tools).__name__}")
    messages = check_messages(messages)
    extra.setdefault("documents", None)     # HF passes it too (None unless documents are given)
    compiled = _compile(template)
    parts, size = [], 0
    deadline = time.monotonic() + MAX_RENDER_SECONDS
    try:
        for piece in compiled.generate(messages=messages, add_generation_prompt=add_generation_prompt,
                                       tools=list(tools) if tools is not None else None,
                                       bos_token=bos_token, eos_token=eos_token, **extra):
            parts.append(piece)
            size += len(piece)
            if size > MAX_RENDERED_CHARS:
                raise ChatTemplateError(f"chat template output exceeds {MAX_RENDERED_CHARS} characters")
            if time.monotonic() > deadline:
                raise ChatTemplateError(f"chat template took more than {MAX_RENDER_SECONDS} s to render")
    except ChatTemplateError:
        raise
    except jinja2.exceptions.TemplateError as e:
        raise ChatTemplateError(f"chat template error: {e.message or type(e).__name__}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, RecursionError) as e:
        raise ChatTemplateError(f"chat template failed: {type(e).__name__}: {e}") from None
    return "".join(parts)


# ---- model side ----------------------------------------------------------------------------

def _token_text(model, tid) -> str:
    if tid is None or tid < 0:
        return ""
    return model.tokenizer.token_to_piece(tid, True).decode("utf-8", errors="replace")


def special_tokens(model):
    """(bos_token, eos_token) as text from the model's vocabulary ('' when absent)."""
    tok = model.tokenizer
    return _token_text(model, getattr(tok, "bos", -1)), _token_text(model, getattr(tok, "eos", -1))


def model_template(model, chat_template: Optional[str] = None) -> str:
    """chat_template if given, else the GGUF's tokenizer.chat_template, else CHATML_TEMPLATE with
    a warning."""
    if chat_template is not None:
        if not isinstance(chat_template, str):
            raise TypeError(f"chat_template must be a str or None, got {type(chat_template).__name__}")
        return chat_template
    t = model.metadata.get("tokenizer.chat_template")
    if isinstance(t, str) and t.strip():
        return t
    warnings.warn(f"{os.path.basename(model.model_path)} has no tokenizer.chat_template; "
                  "using the ChatML template (ggmlpy.chat.CHATML_TEMPLATE)", stacklevel=3)
    return CHATML_TEMPLATE


def apply_chat_template(model, messages, add_generation_prompt: bool = True,
                        chat_template: Optional[str] = None, tools=None) -> str:
    template = model_template(model, chat_template)
    bos, eos = special_tokens(model)
    return render(template, messages, add_generation_prompt=add_generation_prompt, tools=tools,
                  bos_token=bos, eos_token=eos)


def prompt_ids(model, text: str) -> List[int]:
    """Token ids of a rendered prompt: special tokens parsed; BOS added as the model asks unless
    the template already wrote it."""
    bos, _ = special_tokens(model)
    add_bos = model.add_bos and not (bos and text.startswith(bos))
    return model.tokenize(text, add_bos=add_bos, special=True)


def end_of_turn_ids(model, template: str) -> List[int]:
    """Token ids of the end-of-turn markers in the template that the model does not already stop
    on (is_eog): a GGUF whose eos is </s> but whose template ends turns with <|im_end|>, say."""
    out = []
    tok = model.tokenizer
    for t in END_OF_TURN_TEXTS:
        if t in template:
            ids = model.tokenize(t, add_bos=False, special=True)
            if len(ids) == 1 and not tok.is_eog(ids[0]) and ids[0] not in out:
                out.append(ids[0])
    return out


def _stop_list(stop) -> List[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise TypeError("stop must be a str, a list of str or None")


def _max_tokens(value, default_none_ok=True):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_tokens must be an int or None, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"max_tokens = {value}, expected an int >= 0 or None (no limit)")
    return value


def _constraint_kwargs(response_format, grammar):
    """generate() keyword for response_format (OpenAI shapes, json_schema.py) or GBNF grammar text:
    {"grammar": text}, or {} when the output is free text."""
    from .json_schema import response_format_grammar
    text = response_format_grammar(response_format)
    if grammar is not None:
        if text is not None:
            raise ValueError("pass either response_format (json) or grammar, not both")
        if not isinstance(grammar, str):
            raise TypeError(f"grammar must be a str of GBNF rules, got {type(grammar).__name__}")
        text = grammar
    return {} if text is None else {"grammar": text}


def _run(model, ids, max_tokens, stop, sampling, stop_ids=()):
    """(iterator of pieces, stats) for one generation, stats taken under the lock so another
    thread's call cannot swap it."""
    with model._lock:
        it = model.generate(ids, max_new_tokens=max_tokens, stop=stop or None, stream=True,
                            stop_token_ids=list(stop_ids), **sampling)
        stats = model.last_stats
    return it, stats


class _LogprobCursor:
    """Hands out the logprob entries of the tokens that make up the text emitted so far, each
    once (a token whose text is still held back, e.g. a possible stop string, waits; the tokens
    of a stop string never come). Incremental: each entry's bytes are looked at once."""

    def __init__(self, model, stats) -> None:
        self.model, self.stats = model, stats
        self.emitted = 0     # bytes of text emitted so far
        self.covered = 0     # bytes of the tokens handed out so far
        self.given = 0       # entries handed out so far
        self.pos = 0         # characters of the tokens handed out so far (text_offset of the next)

    def take(self, piece: str):
        """(entries, text offset of the first of them) for the text grown by piece."""
        self.emitted += len(piece.encode("utf-8"))
        entries = self.stats.logprobs or []
        start, first = self.pos, self.given
        while self.given < len(entries):
            b = self.model.token_to_piece(entries[self.given].id)
            if self.covered + len(b) > self.emitted:
                break
            self.covered += len(b)
            self.pos += len(b.decode("utf-8", errors="replace"))
            self.given += 1
        return entries[first:self.given], start


def _whole_call(model):
    """The Model's lock for reading a whole reply at once (other callers wait instead of making it
    restore its KV cache per token), except with start_batching's engine, whose thread takes the
    lock for every step: holding it here would stop the engine."""
    import contextlib
    return model._lock if model._batch_engine is None else contextlib.nullcontext()


def _sampling(temperature, top_p, top_k, min_p, seed, repeat_penalty, frequency_penalty, presence_penalty,
              logit_bias=None, logits_processor=None, stopping_criteria=None, logprobs=None, extra=None):
    out = dict(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, seed=seed,
               repetition_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
               presence_penalty=presence_penalty, logit_bias=logit_bias, logits_processor=logits_processor,
               stopping_criteria=stopping_criteria, logprobs=logprobs)
    out.update(extra or {})     # typical_p, mirostat_mode, mirostat_tau, mirostat_eta (generate checks them)
    return out


_EXTRA_SAMPLING = ("typical_p", "mirostat_mode", "mirostat_tau", "mirostat_eta", "draft_model", "dry_multiplier",
                   "dry_base", "dry_allowed_length", "dry_penalty_last_n", "dry_sequence_breakers")


def _check_extra(extra):
    for k in extra:
        if k not in _EXTRA_SAMPLING:
            raise TypeError(f"unexpected keyword argument '{k}'")


def _usage(stats):
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.generated_tokens,
            "total_tokens": stats.prompt_tokens + stats.generated_tokens}


def _finish(stats):
    return "stop" if stats.finish_reason == "stop" else "length"


def create_chat_completion(model, messages, max_tokens=None, temperature=0.8, top_p=0.95, top_k=40,
                           min_p=0.05, stop=None, seed=None, stream=False, repeat_penalty=1.0,
                           frequency_penalty=0.0, presence_penalty=0.0, chat_template=None,
                           response_format=None, grammar=None, tools=None, logprobs=False,
                           top_logprobs=None, logit_bias=None, logits_processor=None, stopping_criteria=None,
                           **extra):
    _check_extra(extra)
    if not isinstance(stream, bool):
        raise TypeError(f"stream must be a bool, got {type(stream).__name__}")
    if not isinstance(logprobs, bool) and logprobs is not None:
        raise TypeError(f"logprobs must be a bool (top_logprobs gives the number of alternatives), got {logprobs!r}")
    if top_logprobs is not None and not logprobs:
        raise ValueError("top_logprobs needs logprobs=True")
    max_tokens = _max_tokens(max_tokens)
    stops = _stop_list(stop)
    constrained = _constraint_kwargs(response_format, grammar)
    template = model_template(model, chat_template)
    bos, eos = special_tokens(model)
    text = render(template, messages, add_generation_prompt=True, tools=tools, bos_token=bos, eos_token=eos)
    ids = prompt_ids(model, text)
    sampling = _sampling(temperature, top_p, top_k, min_p, seed, repeat_penalty, frequency_penalty, presence_penalty,
                         logit_bias, logits_processor, stopping_criteria,
                         (top_logprobs or 0) if logprobs else None, extra)
    sampling.update(constrained)
    cid, created, name = "chatcmpl-" + uuid.uuid4().hex, int(time.time()), model.model_path
    it, stats = _run(model, ids, max_tokens, stops, sampling, end_of_turn_ids(model, template))
    from .sampling_hooks import chat_logprobs, emitted_count
    if not stream:
        with _whole_call(model):
            content = "".join(it)
        lp = None
        if logprobs:
            entries = stats.logprobs or []
            lp = chat_logprobs(model, entries[:emitted_count(model, entries, content)])
        return {"id": cid, "object": "chat.completion", "created": created, "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "logprobs": lp, "finish_reason": _finish(stats)}],
                "usage": _usage(stats)}

    def chunks():
        cursor = _LogprobCursor(model, stats)

        def chunk(delta, finish=None, lp=None):
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
                    "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}]}
        yield chunk({"role": "assistant"})
        for piece in it:
            yield chunk({"content": piece}, lp=chat_logprobs(model, cursor.take(piece)[0]) if logprobs else None)
        last = chunk({}, _finish(stats))
        last["usage"] = _usage(stats)
        yield last
    return chunks()


def create_completion(model, prompt, max_tokens=16, temperature=0.8, top_p=0.95, top_k=40, min_p=0.05,
                      stop=None, seed=None, stream=False, repeat_penalty=1.0, frequency_penalty=0.0,
                      presence_penalty=0.0, response_format=None, grammar=None, logprobs=None, echo=False,
                      logit_bias=None, logits_processor=None, stopping_criteria=None, **extra):
    _check_extra(extra)
    if not isinstance(stream, bool):
        raise TypeError(f"stream must be a bool, got {type(stream).__name__}")
    if not isinstance(echo, bool):
        raise TypeError(f"echo must be a bool, got {type(echo).__name__}")
    if not isinstance(prompt, (str, list, tuple)):
        raise TypeError(f"prompt must be a str or a list of token ids, got {type(prompt).__name__}")
    max_tokens = _max_tokens(max_tokens)
    stops = _stop_list(stop)
    sampling = _sampling(temperature, top_p, top_k, min_p, seed, repeat_penalty, frequency_penalty, presence_penalty,
                         logit_bias, logits_processor, stopping_criteria, logprobs, extra)
    sampling.update(_constraint_kwargs(response_format, grammar))
    cid, created, name = "cmpl-" + uuid.uuid4().hex, int(time.time()), model.model_path
    from .sampling_hooks import completion_logprobs, emitted_count, prompt_logprobs
    echo_text, echo_lp = "", []
    if echo:   # the prompt comes first in the text (and its tokens' logprobs, which need all its logits)
        ids = model._prompt_ids(prompt, None, "prompt")
        echo_text = prompt if isinstance(prompt, str) else model.detokenize(ids)
        if logprobs is not None:
            with _whole_call(model):
                echo_lp = prompt_logprobs(model, ids, logprobs)
    it, stats = _run(model, prompt, max_tokens, stops, sampling)

    def choice(text, finish, lp=None):
        return {"text": text, "index": 0, "logprobs": lp, "finish_reason": finish}

    if not stream:
        with _whole_call(model):
            text = "".join(it)
        lp = None
        if logprobs is not None:
            entries = stats.logprobs or []
            lp = completion_logprobs(model, echo_lp + entries[:emitted_count(model, entries, text)])
            if echo_lp:   # the generated tokens' offsets start after the prompt text as given
                k = len(echo_lp)
                gen = completion_logprobs(model, entries[:emitted_count(model, entries, text)], len(echo_text))
                lp["text_offset"] = lp["text_offset"][:k] + gen["text_offset"]
        return {"id": cid, "object": "text_completion", "created": created, "model": name,
                "choices": [choice(echo_text + text, _finish(stats), lp)], "usage": _usage(stats)}

    def chunks():
        cursor = _LogprobCursor(model, stats)
        if echo:
            lp = completion_logprobs(model, echo_lp) if logprobs is not None else None
            yield {"id": cid, "object": "text_completion", "created": created, "model": name,
                   "choices": [choice(echo_text, None, lp)]}
        for piece in it:
            lp = None
            if logprobs is not None:
                entries, start = cursor.take(piece)
                lp = completion_logprobs(model, entries, len(echo_text) + start)
            yield {"id": cid, "object": "text_completion", "created": created, "model": name,
                   "choices": [choice(piece, None, lp)]}
        yield {"id": cid, "object": "text_completion", "created": created, "model": name,
               "choices": [choice("", _finish(stats))], "usage": _usage(stats)}
    return chunks()


def chat(model, messages_or_text, **kwargs) -> str:
    """The assistant's reply text; a str is one user message."""
    if isinstance(messages_or_text, str):
        messages_or_text = [{"role": "user", "content": messages_or_text}]
    if kwargs.get("stream"):
        raise ValueError("chat() returns a str; use create_chat_completion(stream=True) to stream")
    return create_chat_completion(model, messages_or_text, **kwargs)["choices"][0]["message"]["content"]
