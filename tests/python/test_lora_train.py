"""LoRA training (src/training, python/ggmlpy/training) against PEFT + PyTorch on tiny HF Llama
and GPT-J models built here: the loss and the gradient of every LoRA parameter (f32 base: 1e-4
relative; f16 and q8_0 bases against HF holding the same dequantized weights: 1e-3 and 0.1), five
AdamW steps (losses 1e-4, final adapter 1e-3 in L2), the trained adapter at inference; then finetune():
interrupt + resume gives the same adapter as one run, logs, plots, the CLI; and SmolLM2-135M (the
Q4_1 file as base) learning a response format from a small instruction set."""
import json
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
from ggmlpy.convert.llama import hf_to_interleaved, interleaved_to_hf  # noqa: E402
from ggmlpy.training import LoraModel, finetune  # noqa: E402
from ggmlpy.training.optim import AdamW  # noqa: E402

TARGETS = {"llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
           "gptj": ["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"]}
HEADS = {"llama": (4, 2), "gptj": (4, 4)}
ARCH = {"llama": gguf.MODEL_ARCH.LLAMA, "gptj": gguf.MODEL_ARCH.GPTJ}


class Pair:
    """A tiny HF model as GGUF (wtype) and as PEFT (HF holding the GGUF's dequantized weights),
    with one random adapter (A and B nonzero) in both."""

    def __init__(self, root, arch, wtype="f32", seed=1):
        self.arch = arch
        hf = (make_llama if arch == "llama" else make_gptj)(root / "hf")
        self.base = root / f"base-{wtype}.gguf"
        if wtype == "q8_0":
            convert_hf(str(root / "hf"), str(root / "f32.gguf"), "f32", progress=False)
            from ggmlpy.quantize import quantize
            quantize(str(root / "f32.gguf"), str(self.base), "q8_0", log=lambda m: None)
        else:
            convert_hf(str(root / "hf"), str(self.base), wtype, progress=False)
        self._load_gguf_weights(hf)
        from peft import LoraConfig, get_peft_model
        torch.manual_seed(seed)
        self.peft = get_peft_model(hf, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS[arch],
                                                  init_lora_weights=False, lora_dropout=0.0))
        self.peft.train()
        self.model = Model(str(self.base), kv_type="f32", n_ctx=64, n_threads=2)
        self.lm = LoraModel(self.model, None, rank=4, alpha=8.0)
        self.params = dict(self.peft.named_parameters())
        tmap = gguf.get_tensor_name_map(ARCH[arch], 2)
        self.module = {}
        for n in self.params:
            if ".lora_A." in n:
                mod = n.split(".lora_A")[0]
                self.module[tmap.get_name(mod[len("base_model.model."):] + ".weight", try_suffixes=(".weight",))] = mod
        for s in self.lm.slots:
            s["a"][...] = self.peft_a(s["name"]).detach().numpy()
            s["b"][...] = self.to_gguf(s["name"], self.peft_b(s["name"]).detach().numpy())

    def _load_gguf_weights(self, hf):
        """HF's weights := the GGUF's, dequantized (Q/K rows back in HF order)."""
        tmap = gguf.get_tensor_name_map(ARCH[self.arch], 2)
        tensors = {t.name: t for t in gguf.GGUFReader(str(self.base)).tensors}
        with torch.no_grad():
            for name, p in hf.named_parameters():
                g = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
                t = tensors[g]
                w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(p.shape)
                p.copy_(torch.from_numpy(np.array(self.from_gguf(g, w))))

    def _heads(self, g):
        if self.arch != "llama":
            return 0
        return HEADS["llama"][0] if ".attn_q." in g else HEADS["llama"][1] if ".attn_k." in g else 0

    def to_gguf(self, g, w):
        h = self._heads(g)
        return hf_to_interleaved(w, h) if h else w

    def from_gguf(self, g, w):
        h = self._heads(g)
        return interleaved_to_hf(w, h) if h and w.ndim >= 1 and g.endswith((".weight", ".bias")) else w

    def peft_a(self, g):
        return self.params[self.module[g] + ".lora_A.default.weight"]

    def peft_b(self, g):
        return self.params[self.module[g] + ".lora_B.default.weight"]


def _batch(seed=3, n=2, T=20):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 300, T) for _ in range(n)]


def _ours(batch):
    return [(b.astype(np.int32), np.concatenate([b[1:], [-1]]).astype(np.int32)) for b in batch]


@pytest.mark.parametrize("arch", ["llama", "gptj"])
# measured (Zen 3, AVX2): f32 1.7e-6, f16 1.7e-6, q8_0 5.8e-2 (a quantized base runs its forward
# matmuls on 8-bit activations, as at inference, and its input gradients on 8-bit tiles and dy)
@pytest.mark.parametrize("wtype,tol", [("f32", 1e-4), ("f16", 1e-3), ("q8_0", 0.1)])
def test_gradients_match_peft(arch, wtype, tol, tmp_path):
    p = Pair(tmp_path, arch, wtype)
    batch = _batch()
    out = p.peft(torch.tensor(np.stack(batch)), labels=torch.tensor(np.stack(batch)))
    out.loss.backward()
    p.lm._t.zero_grad()
    count = sum(int((t >= 0).sum()) for _, t in _ours(batch))
    loss, n = p.lm.accumulate(_ours(batch), 1.0 / count)
    assert n == count == 2 * 19
    assert abs(loss / n - out.loss.item()) <= tol * out.loss.item()
    worst = 0.0
    for s in p.lm.slots:
        ga = p.peft_a(s["name"]).grad.numpy()
        gb = p.to_gguf(s["name"], p.peft_b(s["name"]).grad.numpy())
        worst = max(worst, rel_err(s["ga"], ga), rel_err(s["gb"], gb))
    assert worst <= tol, worst
    assert len(p.lm.slots) == 2 * len(TARGETS[arch])


@pytest.mark.parametrize("arch", ["llama", "gptj"])
def test_five_adamw_steps_match_torch(arch, tmp_path):
    p = Pair(tmp_path, arch)
    batch = _batch(seed=5)
    topt = torch.optim.AdamW([q for q in p.peft.parameters() if q.requires_grad], lr=1e-2, weight_decay=0.01)
    opt = AdamW(p.lm.params(), weight_decay=0.01)
    for _ in range(5):
        out = p.peft(torch.tensor(np.stack(batch)), labels=torch.tensor(np.stack(batch)))
        out.loss.backward()
        topt.step()
        topt.zero_grad()
        loss, _, _ = p.lm.train_step(_ours(batch), opt, 1e-2, 0.0)
        assert abs(loss - out.loss.item()) <= 1e-4 * out.loss.item()
    # the adapter as a whole (L2 over every A and B) within 1e-3: a single weight whose gradient is
    # below Adam's eps (1e-8) moves by up to lr on noise alone, in PyTorch as in ours
    ours = np.concatenate([np.concatenate([s["a"].ravel(), s["b"].ravel()]) for s in p.lm.slots])
    ref = np.concatenate([np.concatenate([p.peft_a(s["name"]).detach().numpy().ravel(),
                                          p.to_gguf(s["name"], p.peft_b(s["name"]).detach().numpy()).ravel()])
                          for s in p.lm.slots])
    assert np.linalg.norm(ours - ref) <= 1e-3 * np.linalg.norm(ref)
    # the trained adapter, saved and applied unmerged, gives PEFT's logits with the same A and B
    ad = p.lm.save_adapter(tmp_path / "trained.gguf")
    with torch.no_grad():
        for s in p.lm.slots:
            p.peft_a(s["name"]).copy_(torch.from_numpy(np.array(s["a"])))
            p.peft_b(s["name"]).copy_(torch.from_numpy(p.from_gguf(s["name"], np.array(s["b"]))))
    p.peft.eval()
    ids = [int(i) for i in batch[0]]
    with Model(str(p.base), kv_type="f32", lora=ad) as m:
        assert rel_err(m.eval(ids), hf_logits(p.peft, ids)) < 1e-4


def test_clip_and_schedule_match_torch():
    from ggmlpy.training.optim import clip_grads, lr_at
    rng = np.random.default_rng(0)
    gs = [rng.standard_normal((3, 5)).astype(np.float32) for _ in range(3)]
    ts = [torch.tensor(g.copy(), requires_grad=True) for g in gs]
    for t, g in zip(ts, gs):
        t.grad = torch.tensor(g.copy())
    n_ref = torch.nn.utils.clip_grad_norm_(ts, 0.5)
    n = clip_grads(gs, 0.5)
    assert abs(n - float(n_ref)) < 1e-5
    for t, g in zip(ts, gs):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-6)
    from transformers import get_cosine_schedule_with_warmup, get_constant_schedule_with_warmup
    for make, kind in ((get_cosine_schedule_with_warmup, "cosine"), (get_constant_schedule_with_warmup, "constant")):
        o = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sch = make(o, 3, 10) if kind == "cosine" else make(o, 3)
        for step in range(10):
            assert abs(lr_at(step, 0.1, 10, 3, kind) - o.param_groups[0]["lr"]) < 1e-9
            o.step()
            sch.step()


def _text_file(tmp_path):
    words = "the cat sat on the mat and the dog ran to the park while birds sang".split()
    rng = np.random.default_rng(0)
    path = tmp_path / "train.txt"
    path.write_text(" ".join(rng.choice(words, 600)))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    make_llama(root / "hf")
    convert_hf(str(root / "hf"), str(root / "base.gguf"), "f32", progress=False)
    return root / "base.gguf"


def test_finetune_interrupt_resume_equals_one_run(tiny, tmp_path):
    data = _text_file(tmp_path)
    kw = dict(ctx=32, rank=4, alpha=8.0, lr=3e-3, max_steps=6, warmup=2, save_every=1, eval_fraction=0.2,
              progress=False, plot=False)
    full = finetune(str(tiny), data, tmp_path / "full.gguf", **kw)
    assert full["steps"] == 6 and full["eval_loss"] < full["eval_loss_start"]

    def stop_at_3(rec):
        if rec["step"] == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        finetune(str(tiny), data, tmp_path / "part.gguf", callback=stop_at_3, **kw)
    assert (tmp_path / "part.gguf.ckpt.npz").is_file() and not (tmp_path / "part.gguf").exists()
    resumed = finetune(str(tiny), data, tmp_path / "part.gguf", resume=True, **kw)
    assert resumed["steps"] == 6 and not (tmp_path / "part.gguf.ckpt.npz").exists()
    a = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(str(tmp_path / "full.gguf")).tensors}
    b = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(str(tmp_path / "part.gguf")).tensors}
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in open(tmp_path / "part.gguf.log.jsonl")]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert {"tokens", "lr", "tokens_per_s", "rss_mb"} <= set(log[-1]) and "eval_loss" in log[-1]
    # a checkpoint from another configuration is refused
    with pytest.raises(KeyboardInterrupt):
        finetune(str(tiny), data, tmp_path / "x.gguf", callback=stop_at_3, **kw)
    with pytest.raises(ValueError, match="checkpoint from another run \\(rank differ\\)"):
        finetune(str(tiny), data, tmp_path / "x.gguf", resume=True, **{**kw, "rank": 2})


def test_finetune_errors(tiny, tmp_path):
    data = _text_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="training data not found"):
        finetune(str(tiny), tmp_path / "none.txt", tmp_path / "o.gguf", progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{oops\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: not valid JSON"):
        finetune(str(tiny), bad, tmp_path / "o.gguf", progress=False)
    with pytest.raises(ValueError, match="target module 'wq' is not one of llama's"):
        finetune(str(tiny), data, tmp_path / "o.gguf", targets="q,wq", progress=False)
    with pytest.raises(ValueError, match="n_ctx 32 is smaller than ctx \\+ 1"):
        with Model(str(tiny), n_ctx=32) as m:
            finetune(m, data, tmp_path / "o.gguf", ctx=64, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        finetune(str(tiny), data, tmp_path / "o.gguf", resume=True, progress=False)
    assert not (tmp_path / "o.gguf").exists()


def test_cli_finetune_and_plot(tiny, tmp_path):
    data = _text_file(tmp_path)
    out = tmp_path / "cli.gguf"
    r = subprocess.run([sys.executable, "-m", "ggmlpy", "finetune", "-m", str(tiny), "--data", str(data), "-o",
                        str(out), "--ctx", "32", "--rank", "4", "--max-steps", "3", "--targets", "q,v",
                        "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out) and "3 steps" in r.stderr
    png = out.with_suffix(".loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = {t.name for t in gguf.GGUFReader(str(out)).tensors}
    assert names == {f"blk.{i}.{t}.weight.lora_{ab}" for i in range(2) for t in ("attn_q", "attn_v") for ab in "ab"}
    with Model(str(tiny), lora=out) as m:
        assert np.isfinite(m.eval([1, 2, 3])).all()
    r = subprocess.run([sys.executable, "-m", "ggmlpy", "plot-log", str(out) + ".log.jsonl", "-o",
                        str(tmp_path / "again.png")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "again.png").read_bytes()[:4] == b"\x89PNG"


FORMAT_DATA = [("Name a fruit.", "apple"), ("Name a color.", "blue"), ("Name an animal.", "horse"),
               ("Name a country.", "Japan"), ("Name a planet.", "Mars"), ("Name a metal.", "iron"),
               ("Name a flower.", "rose"), ("Name a sport.", "tennis"), ("Name a drink.", "tea"),
               ("Name a tree.", "oak"), ("Name a bird.", "eagle"), ("Name a fish.", "salmon"),
               ("Name a tool.", "hammer"), ("Name a city.", "Paris"), ("Name a vegetable.", "carrot"),
               ("Name a shape.", "circle"), ("Name an instrument.", "piano"), ("Name a season.", "winter"),
               ("Name a gem.", "ruby"), ("Name a river.", "Nile"), ("Name a month.", "May"),
               ("Name a number.", "seven"), ("Name a vehicle.", "bicycle"), ("Name a language.", "Spanish")]


def test_smollm2_learns_a_response_format(smollm2_path, tmp_path):
    """Instruction tuning on the real model: every answer is 'ANSWER: <word> #END'. After training
    the held-out loss is lower and a question it never saw is answered in that format."""
    data = tmp_path / "format.jsonl"
    with open(data, "w") as f:
        for q, a in FORMAT_DATA:
            f.write(json.dumps({"instruction": q, "output": f"ANSWER: {a} #END"}) + "\n")
    s = finetune(smollm2_path, data, tmp_path / "fmt.gguf", ctx=64, rank=8, alpha=16.0, targets="q,v,o,down",
                 lr=2e-3, max_steps=24, batch_size=2, warmup=2, eval_fraction=0.15, seed=1, progress=False, plot=False)
    assert s["eval_loss"] < 0.5 * s["eval_loss_start"], s
    msgs = [{"role": "user", "content": "Name a mountain."}]
    with Model(smollm2_path, n_ctx=256, lora=tmp_path / "fmt.gguf") as m:
        out = m.create_chat_completion(msgs, max_tokens=12, temperature=0)["choices"][0]["message"]["content"]
    with Model(smollm2_path, n_ctx=256) as m:
        before = m.create_chat_completion(msgs, max_tokens=12, temperature=0)["choices"][0]["message"]["content"]
    assert out.startswith("ANSWER: ") and "#END" in out, out
    assert not before.startswith("ANSWER:")


def test_dropout_gradients_match_peft_with_the_same_masks(tmp_path):
    """lora_dropout: PEFT's dropout modules are replaced by our masks (made by the dropout op with
    the seeds the trainer uses), then loss and gradients agree as without dropout; a mask keeps
    about 1 - p of the inputs, scaled by 1 / (1 - p)."""
    from ggmlpy import _core
    p_drop = 0.3
    pair = Pair(tmp_path, "llama")
    lm = LoraModel(pair.model, None, rank=4, alpha=8.0, dropout=p_drop, seed=11)
    for s, s0 in zip(lm.slots, pair.lm.slots):
        s["a"][...] = s0["a"]
        s["b"][...] = s0["b"]
    batch = _batch(seed=9, n=1)
    T = len(batch[0])
    seq_seed = lm.dropout_seed(0, 0)
    for k, s in enumerate(lm.slots):
        n_in = s["a"].shape[1]
        g = _core.ops.Graph()
        mask, = g.compute([g.dropout(g.input(np.ones((T, n_in), np.float32)), p_drop, seq_seed * 1000003 + k)])
        kept = (mask > 0).mean()
        assert abs(kept - (1 - p_drop)) < 0.05 and np.allclose(mask[mask > 0], 1 / (1 - p_drop))
        layer = pair.module[s["name"]]
        mod = pair.peft.get_submodule(layer)
        m_t = torch.from_numpy(np.array(mask))

        class Mask(torch.nn.Module):
            def forward(self, x, m=m_t):
                return x * m
        mod.lora_dropout["default"] = Mask()
    out = pair.peft(torch.tensor(np.stack(batch)), labels=torch.tensor(np.stack(batch)))
    out.loss.backward()
    lm._t.zero_grad()
    loss, n = lm.accumulate(_ours(batch), 1.0 / (T - 1), step=0)
    assert abs(loss / n - out.loss.item()) <= 1e-4 * out.loss.item()
    for s in lm.slots:
        assert rel_err(s["ga"], pair.peft_a(s["name"]).grad.numpy()) <= 1e-4
        assert rel_err(s["gb"], pair.to_gguf(s["name"], pair.peft_b(s["name"]).grad.numpy())) <= 1e-4


@pytest.mark.parametrize("arch", ["llama", "gptj"])
def test_stress_training_threads_and_interleaving(arch, tmp_path):
    """Run under ASan/UBSan by tests/run_sanitizers.sh (-k stress): steps with dropout at 1 and 2
    threads give the same gradients; evaluation with an adapter between training steps, and a
    step on a closed model, are safe."""
    hf_root = tmp_path / "m"
    (make_llama if arch == "llama" else make_gptj)(hf_root / "hf")
    convert_hf(str(hf_root / "hf"), str(hf_root / "b.gguf"), "q8_0", progress=False)
    batch = _ours(_batch(seed=2, n=2, T=24))
    grads = []
    for nth in (1, 2):
        m = Model(str(hf_root / "b.gguf"), n_ctx=32, n_threads=nth)
        lm = LoraModel(m, None, rank=3, alpha=6.0, dropout=0.2, seed=4, n_threads=nth)
        for s in lm.slots:
            s["b"][...] = np.random.default_rng(len(s["name"])).standard_normal(s["b"].shape) * 0.1
        opt = AdamW(lm.params())
        for _ in range(2):
            lm.train_step(batch, opt, 1e-3)
            ad = lm.save_adapter(tmp_path / f"s{nth}.gguf")
            with Model(str(hf_root / "b.gguf"), n_ctx=32, lora=ad) as mm:
                assert np.isfinite(mm.eval([1, 2, 3])).all()
        lm._t.zero_grad()
        lm.accumulate(batch, 0.01, step=7)
        grads.append([g.copy() for g in lm.grads()])
        m.close()
        with pytest.raises(ValueError, match="closed"):
            lm.accumulate(batch, 0.01)
    for a, b in zip(*grads):
        assert rel_err(a, b) < 1e-5


def test_init_adapter_from_converted_peft(tmp_path):
    """--init-adapter / LoraModel.load_adapter: a PEFT adapter converted by us (alpha 8, r 4) loads
    into a run with another alpha (B rescaled so the product is the same) and gives PEFT's loss;
    an adapter with other targets or another rank is refused."""
    from ggmlpy.lora import convert_peft
    p = Pair(tmp_path, "llama")
    p.peft.save_pretrained(tmp_path / "peft")
    ad = convert_peft(tmp_path / "peft", tmp_path / "init.gguf", str(p.base))
    lm = LoraModel(p.model, None, rank=4, alpha=2.0)
    lm.load_adapter(ad)
    batch = _ours(_batch(seed=4, n=1))
    ref, _ = p.lm.eval_loss(batch)          # p.lm holds PEFT's A and B directly
    got, _ = lm.eval_loss(batch)
    assert abs(got - ref) <= 1e-6 * ref
    ids = torch.tensor([batch[0][0].astype(np.int64)])
    out = p.peft(ids, labels=ids)
    assert abs(ref - out.loss.item()) <= 1e-4 * out.loss.item()
    with pytest.raises(ValueError, match="targets differ"):
        LoraModel(p.model, "q,v", rank=4, alpha=8.0).load_adapter(ad)
    with pytest.raises(ValueError, match="has rank 4, this run uses rank 2"):
        LoraModel(p.model, None, rank=2, alpha=8.0).load_adapter(ad)
