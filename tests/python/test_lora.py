"""LoRA adapters at inference (src/adapters/lora.h, python/ggmlpy/lora): PEFT adapters on tiny HF
Llama and GPT-J models, converted by `ggmlpy convert --base`, give PEFT's logits when applied
unmerged (Model(lora=...)) and when merged (`ggmlpy export-lora`); scales, alpha, rsLoRA and
rank/alpha patterns follow PEFT; bad adapters raise errors naming the file and tensor."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
gguf = pytest.importorskip("gguf")

from fixtures_convert import hf_logits, make_gptj, make_llama, rel_err  # noqa: E402
from ggmlpy import Model  # noqa: E402
from ggmlpy.convert.hf_convert import convert_hf  # noqa: E402
from ggmlpy.lora import convert_peft, export_lora, lora_specs, parse_lora_flag  # noqa: E402

IDS = [1, 5, 9, 20, 33, 7, 100, 3, 64, 2, 250, 17]
TARGETS = {"llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
           "gptj": ["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"]}


def _peft_model(hf, arch, seed=1, **cfg):
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(seed)
    conf = dict(r=4, lora_alpha=8, target_modules=TARGETS[arch], init_lora_weights=False)
    conf.update(cfg)
    return get_peft_model(hf, LoraConfig(**conf)).eval()


class Case:
    """A tiny HF model, its f32 GGUF and a PEFT adapter (saved and converted)."""

    def __init__(self, root, arch, **cfg):
        self.arch = arch
        self.dir = root / arch
        hf = (make_llama if arch == "llama" else make_gptj)(self.dir / "hf")
        self.base = self.dir / "base.gguf"
        convert_hf(str(self.dir / "hf"), str(self.base), "f32", progress=False)
        self.peft = _peft_model(hf, arch, **cfg)
        self.peft.save_pretrained(self.dir / "peft")
        self.adapter = self.dir / "adapter.gguf"
        convert_peft(self.dir / "peft", self.adapter, str(self.base))

    def ref(self, ids=IDS):
        return hf_logits(self.peft, ids)


@pytest.fixture(scope="module", params=["llama", "gptj"])
def case(request, tmp_path_factory):
    return Case(tmp_path_factory.mktemp("lora"), request.param)


def _logits(path, ids=IDS, **kw):
    with Model(str(path), kv_type="f32", n_threads=2, **kw) as m:
        return m.eval(ids)


def test_unmerged_matches_peft(case):
    ref = case.ref()
    with case.peft.disable_adapter():
        base_ref = hf_logits(case.peft, IDS)
    assert rel_err(ref, base_ref) > 0.1  # the adapter changes the logits a lot
    got = _logits(case.base, lora=str(case.adapter))
    assert rel_err(got, ref) < 1e-4
    assert rel_err(_logits(case.base), base_ref) < 1e-4
    # prompt in chunks and token by token (decode) give the same logits
    with Model(str(case.base), kv_type="f32", n_batch=5, lora=case.adapter) as m:
        chunked = np.concatenate([m.eval(IDS[:7]), m.eval(IDS[7:8]), m.eval(IDS[8:])])
    assert rel_err(chunked, ref) < 1e-4


def test_scale_and_alpha_match_peft(case, tmp_path):
    # user scale 0.5 == PEFT with half the alpha (same A and B)
    half = tmp_path / "half"
    shutil.copytree(case.dir / "peft", half)
    cfg = json.loads((half / "adapter_config.json").read_text())
    cfg["lora_alpha"] = cfg["lora_alpha"] / 2
    (half / "adapter_config.json").write_text(json.dumps(cfg))
    from peft import PeftModel
    hf = (make_llama if case.arch == "llama" else make_gptj)(tmp_path / "hf")
    ref = hf_logits(PeftModel.from_pretrained(hf, half).eval(), IDS)
    assert rel_err(_logits(case.base, lora=(case.adapter, 0.5)), ref) < 1e-4
    # two adapters add: the same one twice at 0.25 each
    assert rel_err(_logits(case.base, lora=[(case.adapter, 0.25), (case.adapter, 0.25)]), ref) < 1e-4
    # scale 0: exactly the base model
    assert np.array_equal(_logits(case.base, lora=(case.adapter, 0.0)), _logits(case.base))


@pytest.mark.parametrize("arch", ["llama", "gptj"])
def test_rslora_and_patterns_match_peft(arch, tmp_path):
    c = Case(tmp_path, arch, r=6, lora_alpha=5, use_rslora=True,
             rank_pattern={"k_proj": 2}, alpha_pattern={TARGETS[arch][-1]: 11, "v_proj": 3})
    assert rel_err(_logits(c.base, lora=c.adapter), c.ref()) < 1e-4


def test_f16_adapter_and_quantized_base(case, tmp_path):
    ref = case.ref()
    ad16 = tmp_path / "ad16.gguf"
    convert_peft(case.dir / "peft", ad16, str(case.base), outtype="f16")
    r = gguf.GGUFReader(str(ad16))
    assert {int(t.tensor_type) for t in r.tensors} == {int(gguf.GGMLQuantizationType.F16)}
    assert rel_err(_logits(case.base, lora=ad16), ref) < 2e-3
    from ggmlpy.quantize import quantize
    q8 = tmp_path / "base-q8_0.gguf"
    quantize(str(case.base), str(q8), "q8_0", progress=False, log=lambda m: None)
    # a q8_0 base: within q8_0's own error of PEFT (the base alone is as far from HF)
    with case.peft.disable_adapter():
        base_err = rel_err(_logits(q8), hf_logits(case.peft, IDS))
    assert rel_err(_logits(q8, lora=case.adapter), ref) < max(3 * base_err, 1e-3)


def test_adapter_file_layout(case):
    """llama.cpp's adapter layout: general.type/adapter.type/alpha, <target>.lora_a [n_in, r]
    and .lora_b [r, n_out] (ggml order), PEFT's A and B (B's rows in GGUF rope order)."""
    r = gguf.GGUFReader(str(case.adapter))
    f = r.fields
    assert f["general.type"].contents() == "adapter"
    assert f["adapter.type"].contents() == "lora"
    assert f["adapter.lora.alpha"].contents() == pytest.approx(8.0)
    assert f["general.architecture"].contents() == case.arch
    t = {x.name: x for x in r.tensors}
    pa = {k: v.detach().numpy() for k, v in case.peft.state_dict().items() if "lora_" in k}
    layer = "model.layers.0.self_attn" if case.arch == "llama" else "transformer.h.0.attn"
    a_ref = pa[f"base_model.model.{layer}.v_proj.lora_A.default.weight"]
    b_ref = pa[f"base_model.model.{layer}.v_proj.lora_B.default.weight"]
    a, b = t["blk.0.attn_v.weight.lora_a"], t["blk.0.attn_v.weight.lora_b"]
    assert list(a.shape) == [64, 4] and list(b.shape) == [4, b_ref.shape[0]]
    assert np.array_equal(np.asarray(a.data).reshape(a_ref.shape), a_ref)
    assert np.array_equal(np.asarray(b.data).reshape(b_ref.shape), b_ref)
    n_pairs = len(TARGETS[case.arch]) * 2
    assert len(r.tensors) == 2 * n_pairs


def test_export_lora_matches_peft_merge(case, tmp_path):
    merged = tmp_path / "merged.gguf"
    export_lora(case.base, case.adapter, merged, log=lambda m: None)
    ref = case.ref()
    got = _logits(merged)
    assert rel_err(got, ref) < 1e-4
    # PEFT's own merge gives the same weights (dequantized by the gguf package)
    import copy
    sd = copy.deepcopy(case.peft).merge_and_unload().state_dict()
    r = gguf.GGUFReader(str(merged))
    t = {x.name: x for x in r.tensors}
    key = "model.layers.1.mlp.down_proj.weight" if case.arch == "llama" else "transformer.h.1.mlp.fc_out.weight"
    w = gguf.quants.dequantize(t["blk.1.ffn_down.weight"].data, t["blk.1.ffn_down.weight"].tensor_type)
    np.testing.assert_allclose(w.reshape(sd[key].shape), sd[key].numpy(), rtol=0, atol=1e-6)
    # unmerged at scale 0.7 == merged at 0.7
    m7 = tmp_path / "m7.gguf"
    export_lora(case.base, [(case.adapter, 0.7)], m7, log=lambda m: None)
    assert rel_err(_logits(m7), _logits(case.base, lora=(case.adapter, 0.7))) < 1e-5


def test_export_lora_keeps_or_sets_types(case, tmp_path):
    from ggmlpy.quantize import quantize
    q8 = tmp_path / "q8.gguf"
    quantize(str(case.base), str(q8), "q8_0", progress=False, log=lambda m: None)
    logs = []
    out = tmp_path / "merged-q8.gguf"
    export_lora(q8, case.adapter, out, log=logs.append)
    assert any("quantized again (q8_0)" in m for m in logs)
    rb, ro = gguf.GGUFReader(str(q8)), gguf.GGUFReader(str(out))
    assert [(t.name, int(t.tensor_type)) for t in rb.tensors] == [(t.name, int(t.tensor_type)) for t in ro.tensors]
    # each merged q8_0 weight is within half a q8_0 step of W_q8 + s B A (gguf's dequantizer)
    ta = {t.name: t for t in gguf.GGUFReader(str(case.adapter)).tensors}
    tb, to = {t.name: t for t in rb.tensors}, {t.name: t for t in ro.tensors}
    name = "blk.0.attn_q.weight"
    deq = lambda t: gguf.quants.dequantize(t.data, t.tensor_type)  # noqa: E731
    a = np.asarray(ta[name + ".lora_a"].data, dtype=np.float32).reshape(4, -1)
    b = np.asarray(ta[name + ".lora_b"].data, dtype=np.float32).reshape(-1, 4)
    want = deq(tb[name]) + 2.0 * b @ a
    got = deq(to[name])
    step = np.abs(want).reshape(want.shape[0], -1, 32).max(axis=2, keepdims=True) / 127
    ratio = np.abs(got - want).reshape(step.shape[0], -1, 32) / step
    # half a step, plus the f16 rounding of the block scale (2^-11 relative) over 127 levels
    assert ratio.max() <= 0.5 + 127 * 2 ** -11
    assert not np.array_equal(deq(tb[name]), got)
    # --outtype f16: every weight f16, norms f32
    f16 = tmp_path / "merged-f16.gguf"
    export_lora(case.base, case.adapter, f16, outtype="f16", log=lambda m: None)
    types = {t.name: gguf.GGMLQuantizationType(int(t.tensor_type)).name for t in gguf.GGUFReader(str(f16)).tensors}
    assert types["blk.0.attn_q.weight"] == "F16" and types["blk.0.attn_norm.weight"] == "F32"
    assert rel_err(_logits(f16), case.ref()) < 2e-3


def _write_adapter(path, arch, tensors, alpha=4.0, gtype="adapter"):
    w = gguf.GGUFWriter(str(path), arch)
    if gtype:
        w.add_string("general.type", gtype)
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha)
    for name, arr in tensors.items():
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_bad_adapters_are_clear_errors(case, tmp_path):
    from ggmlpy import GGUFError
    base = str(case.base)
    a, b = np.ones((4, 64)), np.ones((64, 4))
    good = {"blk.0.attn_v.weight.lora_a": a}
    with pytest.raises(FileNotFoundError, match="LoRA adapter not found"):
        Model(base, lora=tmp_path / "missing.gguf")
    with pytest.raises(GGUFError, match=r"not a LoRA adapter \(key general.type is absent"):
        Model(base, lora=base)
    other = "gptj" if case.arch == "llama" else "llama"
    p = _write_adapter(tmp_path / "arch.gguf", other, {**good, "blk.0.attn_v.weight.lora_b": b})
    with pytest.raises(GGUFError, match=f"adapter for architecture '{other}'.*is '{case.arch}'"):
        Model(base, lora=p)
    p = _write_adapter(tmp_path / "unpaired.gguf", case.arch, good)
    with pytest.raises(GGUFError, match=r"unpaired.gguf: tensor 'blk.0.attn_v.weight.lora_a' has no matching"):
        Model(base, lora=p)
    p = _write_adapter(tmp_path / "shape.gguf", case.arch,
                       {"blk.0.attn_v.weight.lora_a": np.ones((4, 32)), "blk.0.attn_v.weight.lora_b": b})
    with pytest.raises(GGUFError, match=r"shape.gguf: tensors 'blk.0.attn_v.weight.lora_a' \[32, 4\].*do not fit"):
        Model(base, lora=p)
    p = _write_adapter(tmp_path / "target.gguf", case.arch,
                       {"blk.7.attn_v.weight.lora_a": a, "blk.7.attn_v.weight.lora_b": b})
    with pytest.raises(GGUFError, match=r"target.gguf: tensor 'blk.7.attn_v.weight.lora_a' targets"):
        Model(base, lora=p)
    with pytest.raises(ValueError, match="must be finite"):
        Model(base, lora=(case.adapter, float("nan")))
    with pytest.raises(TypeError, match="lora must be"):
        Model(base, lora=42)
    with pytest.raises(IsADirectoryError, match="ggmlpy convert FOLDER --base"):
        Model(base, lora=case.dir / "peft")
    # export-lora: the same checks, and nothing written on failure
    out = tmp_path / "never.gguf"
    with pytest.raises(ValueError, match="unpaired.gguf: tensor blk.0.attn_v.weight.lora_a has no matching"):
        export_lora(base, tmp_path / "unpaired.gguf", out, log=lambda m: None)
    with pytest.raises(ValueError, match="is itself an adapter"):
        export_lora(case.adapter, case.adapter, out, log=lambda m: None)
    assert not out.exists() and not list(tmp_path.glob(".never.gguf.*"))


def test_peft_convert_errors(case, tmp_path):
    bad = tmp_path / "dora"
    shutil.copytree(case.dir / "peft", bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    with pytest.raises(ValueError, match="use_dora = True is not supported"):
        convert_peft(bad, tmp_path / "x.gguf", str(case.base))
    with pytest.raises(FileNotFoundError, match="adapter_config.json missing"):
        convert_peft(case.dir / "hf", tmp_path / "x.gguf", str(case.base))
    # an adapter for a wider model does not fit this base
    wide = tmp_path / "widehf"
    hf = (make_llama(wide, hidden_size=96, num_attention_heads=4) if case.arch == "llama"
          else make_gptj(wide, n_embd=96))
    _peft_model(hf, case.arch).save_pretrained(tmp_path / "widepeft")
    with pytest.raises(ValueError, match=r"do not fit blk\.\d+\.\w+\.weight"):
        convert_peft(tmp_path / "widepeft", tmp_path / "x.gguf", str(case.base))
    assert not (tmp_path / "x.gguf").exists()
    # the HF folder works as the base too, and gives the same file
    via_hf = tmp_path / "via-hf.gguf"
    convert_peft(case.dir / "peft", via_hf, str(case.dir / "hf"))
    assert via_hf.read_bytes() == case.adapter.read_bytes()


def test_lora_specs():
    assert parse_lora_flag("a.gguf") == ("a.gguf", 1.0)
    assert parse_lora_flag("a.gguf:0.25") == ("a.gguf", 0.25)
    assert parse_lora_flag("c:/x/a.gguf") == ("c:/x/a.gguf", 1.0)
    assert lora_specs(None) == []
    with pytest.raises(ValueError, match="a path or a \\(path, scale\\) pair"):
        lora_specs([("a", 1, 2)])


def test_cli_generate_convert_export(case, tmp_path):
    env_cmd = [sys.executable, "-m", "ggmlpy"]
    out = tmp_path / "cli-adapter.gguf"
    r = subprocess.run(env_cmd + ["convert", str(case.dir / "peft"), "--base", str(case.base), "-o", str(out),
                                  "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == case.adapter.read_bytes()
    r = subprocess.run(env_cmd + ["convert", str(case.dir / "peft"), "-o", str(tmp_path / "y.gguf")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "pass --base" in r.stderr
    gen = env_cmd + ["generate", "-m", str(case.base), "-p", "hello", "-n", "12", "--temp", "0",
                     "--ignore-eos", "--no-echo"]
    r = subprocess.run(gen + ["--lora", f"{out}:0.5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with Model(str(case.base), lora=(out, 0.5)) as m:
        want = m.generate("hello", max_new_tokens=12, temperature=0, ignore_eos=True)
    with Model(str(case.base)) as m:
        plain = m.generate("hello", max_new_tokens=12, temperature=0, ignore_eos=True)
    assert r.stdout.strip() == want.strip() and want != plain
    r = subprocess.run(gen + ["--lora", str(case.base)], capture_output=True, text=True)
    assert r.returncode == 1 and "not a LoRA adapter" in r.stderr
    merged = tmp_path / "cli-merged.gguf"
    r = subprocess.run(env_cmd + ["export-lora", "-m", str(case.base), "--lora", f"{out}:0.5", "-o", str(merged),
                                  "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert rel_err(_logits(merged), _logits(case.base, lora=(out, 0.5))) < 1e-5
    r = subprocess.run(env_cmd + ["export-lora", "-m", str(case.base), "-o", str(merged)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "at least one --lora" in r.stderr


def test_real_model_adapter(smollm2_path, tmp_path):
    """SmolLM2-135M Q4_1 with an adapter on q/v (random A, B): the logits move, scale 0 is the base
    bit for bit, several sequences at once agree with one at a time, and threads agree."""
    rng = np.random.default_rng(0)
    with Model(smollm2_path, n_ctx=64) as m:
        ids = m.tokenize("The capital of France is")
        base = m.eval(ids, logits="last")
    tensors = {}
    for il in range(30):
        for t, n_out in (("attn_q", 576), ("attn_v", 192)):
            tensors[f"blk.{il}.{t}.weight.lora_a"] = rng.standard_normal((8, 576)) * 0.05
            tensors[f"blk.{il}.{t}.weight.lora_b"] = rng.standard_normal((n_out, 8)) * 0.05
    ad = _write_adapter(tmp_path / "smol-lora.gguf", "llama", tensors, alpha=16.0)
    with Model(smollm2_path, n_ctx=64, lora=ad, n_threads=1) as m:
        one = m.eval(ids, logits="last")
    with Model(smollm2_path, n_ctx=64, lora=ad, n_threads=2) as m:
        two = m.eval(ids, logits="last")
    assert rel_err(one, base) > 0.05
    assert rel_err(two, one) < 1e-5
    with Model(smollm2_path, n_ctx=64, lora=(ad, 0.0)) as m:
        assert np.array_equal(m.eval(ids, logits="last"), base)
    with Model(smollm2_path, n_ctx=64, n_seq_max=3, lora=ad) as m:
        texts = m.generate(["The capital of France is", "Once upon a time"], max_new_tokens=8, temperature=0)
    with Model(smollm2_path, n_ctx=64, lora=ad) as m:
        alone = [m.generate(p, max_new_tokens=8, temperature=0) for p in ["The capital of France is", "Once upon a time"]]
    assert texts == alone
