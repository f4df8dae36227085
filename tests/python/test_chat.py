"""Chat templates and the chat / completion API (python/ggmlpy/chat.py).

Rendered prompts are compared with HF transformers' apply_chat_template on the same template
strings (tests/data/chat_templates/ and the SmolLM2 GGUF's own); greedy chat completions with
HF transformers' greedy continuation of the same prompt (the model loaded from the same GGUF)."""
import warnings
from pathlib import Path

import pytest

from ggmlpy import Model
from ggmlpy import chat as chatmod

MARGIN = 0.25   # as tests/python/test_cli.py: a divergence is allowed only after a near-tie

WITH_SYSTEM = [
    {"role": "system", "content": "You are a terse assistant. Grüße, 你好."},
    {"role": "user", "content": "  What is 2+2?  "},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And times 3? \u2014 answer \"briefly\""},
]
NO_SYSTEM = WITH_SYSTEM[1:]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city (°C)",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
TEMPLATES = ["llama2", "llama3", "mistral", "gemma", "phi3", "zephyr", "chatml_qwen2", "tools_json"]
RAISE_ON_SYSTEM = {"mistral", "gemma"}


def load_template(data_dir, name):
    text = (data_dir / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def hf_tokenizer(bos="<s>", eos="</s>"):
    import tokenizers
    import transformers
    vocab = {bos: 0, eos: 1, "<unk>": 2}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                                unk_token="<unk>")


def hf_render(template, messages, add_generation_prompt, bos="<s>", eos="</s>", tools=None):
    out = hf_tokenizer(bos, eos).apply_chat_template(messages, chat_template=template, tokenize=False,
                                                     add_generation_prompt=add_generation_prompt,
                                                     tools=tools)
    assert isinstance(out, str)
    return out


@pytest.fixture(scope="module")
def smol(smollm2_path):
    m = Model(smollm2_path, n_ctx=512, n_threads=1)
    yield m
    m.close()


# ---- rendering equals HF -------------------------------------------------------------------
@pytest.mark.parametrize("agp", [True, False])
@pytest.mark.parametrize("system", [True, False])
@pytest.mark.parametrize("name", TEMPLATES)
def test_render_matches_hf(data_dir, name, system, agp):
    import jinja2
    template = load_template(data_dir, name)
    messages = WITH_SYSTEM if system else NO_SYSTEM
    tools = TOOLS if name == "tools_json" else None
    if system and name in RAISE_ON_SYSTEM:
        with pytest.raises(jinja2.exceptions.TemplateError):
            hf_render(template, messages, agp, tools=tools)
        with pytest.raises(ValueError, match="chat template error"):
            chatmod.render(template, messages, add_generation_prompt=agp, bos_token="<s>", eos_token="</s>")
        return
    ref = hf_render(template, messages, agp, tools=tools)
    ours = chatmod.render(template, messages, add_generation_prompt=agp, tools=tools,
                          bos_token="<s>", eos_token="</s>")
    assert ours == ref
    if name == "tools_json":
        assert "\u2014" in ours and "°C" in ours and '\n  {\n    "type"' in ours   # ensure_ascii=False, indent


@pytest.mark.parametrize("agp", [True, False])
@pytest.mark.parametrize("system", [True, False])
def test_smollm2_template_matches_hf(smol, system, agp):
    template = smol.metadata["tokenizer.chat_template"]
    bos, eos = chatmod.special_tokens(smol)
    assert (bos, eos) == ("<|im_start|>", "<|im_end|>")
    messages = WITH_SYSTEM if system else NO_SYSTEM
    ref = hf_render(template, messages, agp, bos=bos, eos=eos)
    assert smol.apply_chat_template(messages, add_generation_prompt=agp) == ref
    # a caller-given template overrides the model's
    assert smol.apply_chat_template(messages, agp, chat_template="{{ bos_token }}x") == "<|im_start|>x"


def test_smollm2_end_of_turn_is_eog(smol):
    ids = smol.tokenize("<|im_end|>", add_bos=False)
    assert len(ids) == 1 and smol.tokenizer.is_eog(ids[0])
    assert chatmod.end_of_turn_ids(smol, smol.metadata["tokenizer.chat_template"]) == []


def test_prompt_bos_not_doubled(smol):
    # SmolLM2 adds no BOS; its BOS text (<|im_start|>) starts the rendered prompt and is parsed once
    text = smol.apply_chat_template(NO_SYSTEM)
    ids = chatmod.prompt_ids(smol, text)
    assert ids == smol.tokenize(text, add_bos=False, special=True)
    assert ids[0] == smol.tokenizer.bos and ids[1] != smol.tokenizer.bos


# ---- greedy chat completion equals HF ------------------------------------------------------
@pytest.fixture(scope="module")
def hf_smol(smollm2_path):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(str(smollm2_path.parent), gguf_file=smollm2_path.name)
    return m.eval()


def hf_greedy(model, ids, n, eog):
    """(tokens, top-2 margins) of HF greedy decoding; stops after an EOG token."""
    import torch
    ids = list(ids)
    toks, margins = [], []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids])).logits[0, -1].float()
            top = torch.topk(logits, 2)
            t = int(top.indices[0])
            toks.append(t)
            margins.append(float(top.values[0] - top.values[1]))
            if t in eog:
                break
            ids.append(t)
    return toks, margins


@pytest.mark.parametrize("messages", [WITH_SYSTEM, [{"role": "user", "content": "Say hello."}]],
                         ids=["two_turns", "short_answer"])
def test_greedy_chat_matches_hf(smol, hf_smol, messages):
    n = 12 if len(messages) > 1 else 40
    r = smol.create_chat_completion(messages, temperature=0, max_tokens=n)
    ours = list(smol.last_stats.token_ids)
    ids = chatmod.prompt_ids(smol, smol.apply_chat_template(messages))
    eog = {t for t in range(smol.n_vocab) if smol.tokenizer.is_eog(t)}
    ref, margins = hf_greedy(hf_smol, ids, n, eog)
    k = next((i for i, m in enumerate(margins) if m < MARGIN), len(margins))
    ref_text_tokens = [t for t in ref if t not in eog]
    assert ours[:k] == ref_text_tokens[:k], (ours, ref, margins)
    assert r["usage"] == {"prompt_tokens": len(ids), "completion_tokens": len(ours),
                          "total_tokens": len(ids) + len(ours)}
    if k == len(margins):      # no near-tie: the whole continuation matches, and how it ends
        assert ours == ref_text_tokens
        assert r["choices"][0]["finish_reason"] == ("stop" if ref[-1] in eog else "length")
    msg = r["choices"][0]["message"]
    assert msg["role"] == "assistant" and msg["content"] == smol.detokenize(ours)
    assert r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-")


def test_finish_reasons_and_streaming(smol):
    short = [{"role": "user", "content": "Say hello."}]
    r = smol.create_chat_completion(short, temperature=0, max_tokens=100)
    assert r["choices"][0]["finish_reason"] == "stop"      # ended on <|im_end|>
    assert r["usage"]["completion_tokens"] < 100
    chunks = list(smol.create_chat_completion(short, temperature=0, max_tokens=100, stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == r["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"] == r["usage"]
    assert all(c["choices"][0]["finish_reason"] is None and "usage" not in c for c in chunks[:-1])

    long = [{"role": "user", "content": "What is the capital of France?"}]
    r = smol.create_chat_completion(long, temperature=0, max_tokens=5)
    assert r["choices"][0]["finish_reason"] == "length" and r["usage"]["completion_tokens"] == 5
    assert smol.chat(long, temperature=0, max_tokens=5) == r["choices"][0]["message"]["content"]
    assert smol.chat("Say hello.", temperature=0, max_tokens=100) == \
        smol.create_chat_completion(short, temperature=0, max_tokens=100)["choices"][0]["message"]["content"]


def test_create_completion(smol):
    p = "The capital of France is"
    r = smol.create_completion(p, max_tokens=8, temperature=0)
    assert r["object"] == "text_completion" and r["id"].startswith("cmpl-")
    c = r["choices"][0]
    assert c["text"] == smol.generate(p, max_new_tokens=8, temperature=0) and c["logprobs"] is None
    assert c["finish_reason"] == "length"
    n_prompt = len(smol.tokenize(p))
    assert r["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 8, "total_tokens": n_prompt + 8}
    chunks = list(smol.create_completion(p, max_tokens=8, temperature=0, stream=True))
    assert "".join(ch["choices"][0]["text"] for ch in chunks) == c["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["usage"] == r["usage"]
    r = smol.create_completion(p, max_tokens=20, temperature=0, stop=["."])
    assert r["choices"][0]["finish_reason"] == "stop" and "." not in r["choices"][0]["text"]


# ---- errors ------------------------------------------------------------------------------------
def test_raising_template_is_value_error(smol):
    bad = "{{ raise_exception('no system messages here') }}"
    with pytest.raises(ValueError, match="no system messages here"):
        smol.apply_chat_template(NO_SYSTEM, chat_template=bad)
    with pytest.raises(ValueError, match="no system messages here"):
        smol.create_chat_completion(NO_SYSTEM, chat_template=bad, max_tokens=1)
    with pytest.raises(ValueError, match="syntax error"):
        smol.apply_chat_template(NO_SYSTEM, chat_template="{% for m in messages %}")
    with pytest.raises(ValueError, match="chat template"):   # sandbox: no access to internals
        smol.apply_chat_template(NO_SYSTEM, chat_template="{{ messages.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}")


def test_runaway_template_is_value_error(smol, monkeypatch):
    monkeypatch.setattr(chatmod, "MAX_RENDERED_CHARS", 100_000)
    t = "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}"
    with pytest.raises(ValueError, match="exceeds"):
        smol.apply_chat_template(NO_SYSTEM, chat_template=t)


@pytest.mark.parametrize("messages,exc,needle", [
    ("hello", TypeError, "messages"),
    ([], ValueError, "messages is empty"),
    (["hi"], TypeError, r"messages\[0\]"),
    ([{"content": "hi"}], ValueError, r"messages\[0\] has no 'role'"),
    ([{"role": "user"}], ValueError, r"messages\[0\] has no 'content'"),
    ([{"role": "user", "content": 3}], TypeError, r"messages\[0\]\['content'\]"),
    ([{"role": 1, "content": "x"}], TypeError, r"messages\[0\]\['role'\]"),
])
def test_bad_messages(smol, messages, exc, needle):
    with pytest.raises(exc, match=needle):
        smol.apply_chat_template(messages)
    with pytest.raises(exc, match=needle):
        smol.create_chat_completion(messages)


@pytest.mark.parametrize("kw,exc,needle", [
    (dict(max_tokens=-2), ValueError, "max_tokens"), (dict(max_tokens=1.5), TypeError, "max_tokens"),
    (dict(stop=3), TypeError, "stop"), (dict(stream="yes"), TypeError, "stream"),
    (dict(temperature="hot"), TypeError, "temperature"), (dict(top_p=2.0), ValueError, "top_p"),
    (dict(chat_template=5), TypeError, "chat_template"),
])
def test_bad_arguments(smol, kw, exc, needle):
    with pytest.raises(exc, match=needle):
        smol.create_chat_completion(NO_SYSTEM, **kw)


def test_fallback_template_warns(tmp_path):
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from gguf_tiny import make_llama, write_llama_gguf
    path = write_llama_gguf(make_llama(), tmp_path / "tiny.gguf")
    with Model(path, n_ctx=256, n_threads=1) as m:
        assert "tokenizer.chat_template" not in m.metadata
        with pytest.warns(UserWarning, match="no tokenizer.chat_template"):
            text = m.apply_chat_template(NO_SYSTEM)
        assert text == chatmod.render(chatmod.CHATML_TEMPLATE, NO_SYSTEM)
        assert text.endswith("<|im_start|>assistant\n")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m.apply_chat_template(NO_SYSTEM, chat_template="{{ messages[0]['content'] }}")   # no warning
        with pytest.warns(UserWarning):
            r = m.create_chat_completion(NO_SYSTEM, max_tokens=3, temperature=0)
        assert r["usage"]["completion_tokens"] <= 3
