"""Model.embed against HF transformers: the final hidden states (after the output norm) of
SmolLM2 loaded by transformers from the same GGUF, pooled in numpy here (mean / last / first)."""
import numpy as np
import pytest

import ggmlpy

TEXTS = ["The cat sat on the mat.", "A kitten was sleeping on a rug.",
         "Stock markets fell sharply on Tuesday.", "Les marchés boursiers ont chuté mardi. ✓"]


@pytest.fixture(scope="module")
def smol(smollm2_path):
    m = ggmlpy.Model(smollm2_path, n_ctx=512, n_threads=2)
    yield m
    m.close()


@pytest.fixture(scope="module")
def hf_hidden(smollm2_path):
    """text ids -> HF last_hidden_state (n, n_embd) as float32 numpy."""
    import torch
    from transformers import AutoModel
    hf = AutoModel.from_pretrained(str(smollm2_path.parent), gguf_file=smollm2_path.name).eval()

    def run(ids):
        with torch.no_grad():
            return hf(torch.tensor([ids])).last_hidden_state[0].float().numpy()
    return run


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("pooling", ["mean", "last", "cls"])
def test_embeddings_match_hf(smol, hf_hidden, pooling):
    got = smol.embed(TEXTS, pooling=pooling, normalize=False)
    assert got.shape == (len(TEXTS), 576) and got.dtype == np.float32
    for i, t in enumerate(TEXTS):
        h = hf_hidden(smol.tokenize(t, special=False))
        ref = {"mean": h.mean(0), "last": h[-1], "cls": h[0]}[pooling]
        # Q4_1 weights with 8-bit activations here vs dequantized f32 weights in HF
        assert cos(got[i], ref) > 0.999, (t, pooling, cos(got[i], ref))   # seen: >= 0.9995
        assert np.linalg.norm(got[i]) == pytest.approx(np.linalg.norm(ref), rel=0.02)


def test_normalized_and_similarity_order(smol, hf_hidden):
    e = smol.embed(TEXTS)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    # the two sentences about a cat are closer to each other than to the one about markets
    assert e[0] @ e[1] > e[0] @ e[2]
    # the same order from HF's hidden states
    ref = [hf_hidden(smol.tokenize(t, special=False)).mean(0) for t in TEXTS[:3]]
    assert cos(ref[0], ref[1]) > cos(ref[0], ref[2])


def test_single_text_and_determinism(smol):
    one = smol.embed(TEXTS[0])
    assert one.shape == (576,)
    np.testing.assert_array_equal(one, smol.embed([TEXTS[0]])[0])
    # a batch equals the texts one by one (each from an empty context)
    batch = smol.embed(TEXTS)
    for i, t in enumerate(TEXTS):
        np.testing.assert_array_equal(batch[i], smol.embed(t))


def test_embed_then_generate_is_unaffected(smol):
    smol.reset()
    before = smol.generate("One, two, three,", max_new_tokens=8, temperature=0)
    smol.embed(["One, two, three, four", "something else"])
    assert smol.generate("One, two, three,", max_new_tokens=8, temperature=0) == before


def test_bad_arguments(smol):
    with pytest.raises(ValueError, match="pooling"):
        smol.embed("x", pooling="max")
    with pytest.raises(TypeError, match="texts"):
        smol.embed(42)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        smol.embed(["ok", 3])
    with pytest.raises(ValueError, match="empty"):
        smol.embed([])
    with pytest.raises(ValueError, match=r"texts\[0\] is empty"):
        smol.embed("")                    # SmolLM2 adds no BOS
    with pytest.raises(ValueError, match=r"texts\[1\] is \d+ tokens, longer than the context"):
        smol.embed(["short", "word " * 600])
    with pytest.raises(TypeError, match="normalize"):
        smol.embed("x", normalize="yes")
