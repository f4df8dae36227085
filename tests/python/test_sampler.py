"""_core.Sampler against definitions computed here in numpy: greedy = argmax; top-k / top-p /
min-p restrict the support to the exact truncated set and the empirical distribution matches the
truncated softmax (chi-square bound); penalties change logits exactly as defined; same seed, same
tokens; bad parameters raise ValueError naming the parameter."""
import math

import numpy as np
import pytest

from ggmlpy import _core


def truncated_softmax(logits, temperature, top_k, top_p, min_p):
    """HF-style order: logits / T -> top-k -> softmax over the kept set -> top-p -> min-p."""
    l = np.asarray(logits, np.float64) / temperature
    order = np.argsort(-l, kind="stable")
    if 0 < top_k < len(l):
        order = order[:top_k]
    p = np.exp(l[order] - l[order[0]])
    p /= p.sum()
    keep = len(p)
    if top_p < 1:
        keep = int(np.searchsorted(np.cumsum(p), top_p) + 1)
    if min_p > 0:
        keep = min(keep, int(np.sum(p >= min_p * p[0])))
    out = np.zeros(len(l))
    out[order[:keep]] = p[:keep] / p[:keep].sum()
    return out


def draw(sampler, logits, n):
    return np.bincount([sampler.sample(logits) for _ in range(n)], minlength=len(logits))


def chi2_ok(counts, probs, draws):
    support = probs > 0
    assert counts[~support].sum() == 0, f"tokens outside the truncated set: {np.nonzero(counts * ~support)[0]}"
    exp = probs[support] * draws
    chi2 = float(((counts[support] - exp) ** 2 / exp).sum())
    dof = max(int(support.sum()) - 1, 1)
    bound = dof + 6 * math.sqrt(2 * dof) + 10
    assert chi2 <= bound, f"chi2 {chi2:.1f} > {bound:.1f} (dof {dof})"


@pytest.mark.parametrize("seed", range(5))
def test_greedy_is_argmax(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, 32000).astype(np.float32)
    s = _core.Sampler(temperature=0.0, seed=seed)
    assert s.sample(logits) == int(np.argmax(logits))


@pytest.mark.parametrize("T,k,p,minp", [
    (1.0, 0, 1.0, 0.0), (0.5, 0, 1.0, 0.0), (1.5, 6, 1.0, 0.0), (1.0, 0, 0.7, 0.0),
    (1.0, 0, 1.0, 0.1), (0.8, 10, 0.9, 0.05), (1.2, 0, 0.5, 0.02),
])
def test_distribution_matches_truncated_softmax(T, k, p, minp):
    rng = np.random.default_rng(int(T * 100) + k)
    logits = rng.normal(0, 1.5, 50).astype(np.float32)
    expected = truncated_softmax(logits, T, k, p, minp)
    s = _core.Sampler(temperature=T, top_k=k, top_p=p, min_p=minp, seed=11)
    n = 30000
    chi2_ok(draw(s, logits, n), expected, n)


def test_truncation_support_on_large_vocab():
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, 49152).astype(np.float32)
    for k, p, minp in [(40, 1.0, 0.0), (0, 0.5, 0.0), (0, 1.0, 0.2)]:
        allowed = set(np.nonzero(truncated_softmax(logits, 1.0, k, p, minp))[0].tolist())
        s = _core.Sampler(temperature=1.0, top_k=k, top_p=p, min_p=minp, seed=3)
        got = {s.sample(logits) for _ in range(2000)}
        assert got <= allowed
        assert len(got) > 1


def test_top_k_ties_keep_the_smaller_ids():
    # 5 tokens tie for second place: top_k=3 keeps the best one and the two smallest ids of the tie,
    # wherever they sit in the vocabulary (the heap selection must not depend on scan order)
    logits = np.full(1000, -5.0, np.float32)
    logits[[700, 40, 900, 10, 300]] = 2.0
    logits[555] = 2.5
    logits[[3, 999]] = -np.inf
    logits[4] = np.nan
    s = _core.Sampler(temperature=50.0, top_k=3, top_p=1.0, min_p=0.0, seed=5)
    assert {s.sample(logits) for _ in range(500)} == {555, 10, 40}


def test_top_k_1_is_greedy_at_any_temperature():
    logits = np.random.default_rng(1).normal(0, 1, 1000).astype(np.float32)
    s = _core.Sampler(temperature=5.0, top_k=1, top_p=1.0, min_p=0.0, seed=0)
    assert {s.sample(logits) for _ in range(200)} == {int(np.argmax(logits))}


def test_same_seed_same_output():
    logits = np.random.default_rng(2).normal(0, 2, 5000).astype(np.float32)
    kw = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    a = [_core.Sampler(seed=99, **kw).sample(logits) for _ in range(1)]
    sa, sb, sc = _core.Sampler(seed=99, **kw), _core.Sampler(seed=99, **kw), _core.Sampler(seed=100, **kw)
    ra = [sa.sample(logits) for _ in range(300)]
    rb = [sb.sample(logits) for _ in range(300)]
    rc = [sc.sample(logits) for _ in range(300)]
    assert ra == rb and ra[0] == a[0]
    assert ra != rc
    assert _core.Sampler(seed=-1, **kw).seed >= 0


def test_penalties_exact():
    logits = np.array([2.0, -1.0, 0.5, 3.0, -2.0, 0.0], np.float32)
    s = _core.Sampler(repetition_penalty=1.5, frequency_penalty=0.2, presence_penalty=0.4, repeat_last_n=5)
    s.accept_many([0, 3, 3, 1, 4, 4, 4])      # window of 5: [3, 1, 4, 4, 4]
    assert s.history == [3, 1, 4, 4, 4]
    exp = logits.astype(np.float64).copy()
    for tok, count in {3: 1, 1: 1, 4: 3}.items():
        v = exp[tok]
        v = v / 1.5 if v > 0 else v * 1.5
        exp[tok] = v - count * 0.2 - 0.4
    np.testing.assert_allclose(s.apply_penalties(logits), exp, rtol=0, atol=1e-6)
    # greedy reads the penalized logits: 3.0 -> 3/1.5 - 0.6 = 1.4 < 2.0
    g = _core.Sampler(temperature=0, repetition_penalty=1.5, frequency_penalty=0.2, presence_penalty=0.4)
    g.accept(3)
    assert g.sample(logits) == 0
    g.reset()
    assert g.history == [] and g.sample(logits) == 3


@pytest.mark.parametrize("kw,name", [
    (dict(temperature=-0.1), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.01), "top_p"),
    (dict(min_p=2.0), "min_p"), (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(repeat_last_n=-5), "repeat_last_n"), (dict(temperature=float("nan")), "temperature"),
    (dict(typical_p=0.0), "typical_p"), (dict(mirostat=3), "mirostat"), (dict(mirostat_tau=0.0), "mirostat_tau"),
    (dict(mirostat_eta=-1.0), "mirostat_eta"),
])
def test_bad_parameters(kw, name):
    with pytest.raises(ValueError, match=name):
        _core.Sampler(**kw)


def test_bad_logits():
    s = _core.Sampler()
    with pytest.raises(ValueError, match="1-D"):
        s.sample(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="n_vocab"):
        s.sample(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="finite"):
        s.sample(np.full(4, -np.inf, np.float32))


def typical_reference(logits, temperature, typical_p):
    """Locally typical sampling (Meister et al.): p = softmax(l / T), H = entropy; order by
    |-log p - H| (ties: larger p, then smaller id) and keep the shortest prefix of mass >= typical_p."""
    l = np.asarray(logits, np.float64) / temperature
    p = np.exp(l - l.max())
    p /= p.sum()
    h = -np.sum(p * np.log(p))
    order = sorted(range(len(p)), key=lambda i: (abs(-np.log(p[i]) - h), -p[i], i))
    cum, keep = 0.0, []
    for i in order:
        keep.append(i)
        cum += p[i]
        if cum >= typical_p:
            break
    out = np.zeros(len(p))
    out[keep] = p[keep] / p[keep].sum()
    return out


@pytest.mark.parametrize("T,tp", [(1.0, 0.5), (0.7, 0.9), (1.3, 0.2)])
def test_typical_p_distribution(T, tp):
    logits = np.random.default_rng(int(T * 10)).normal(0, 1.5, 40).astype(np.float32)
    expected = typical_reference(logits, T, tp)
    assert 1 < (expected > 0).sum() < 40
    s = _core.Sampler(temperature=T, top_k=0, top_p=1.0, min_p=0.0, typical_p=tp, seed=4)
    n = 30000
    chi2_ok(draw(s, logits, n), expected, n)


def mirostat_replay(logits, temperature, tau, eta, version, tokens):
    """Checks each drawn token against the Mirostat truncation a numpy reference computes from the
    running mu, and returns the reference's final mu."""
    l = np.asarray(logits, np.float64) / temperature
    p = np.exp(l - l.max())
    p /= p.sum()
    order = sorted(range(len(p)), key=lambda i: (-p[i], i))
    ps = p[order]
    mu = 2 * tau
    for t in tokens:
        if version == 2:
            k = 1 + int(np.sum(-np.log2(ps[1:]) <= mu))     # the most likely always stays
        else:
            m = min(100, len(ps))
            ti = np.log(np.arange(2, m + 1) / np.arange(1, m))
            bi = np.log(ps[:m - 1] / ps[1:m])
            s_hat = np.sum(ti * bi) / np.sum(ti * ti)
            eps = s_hat - 1
            k = int(max(1, min(len(ps), np.round(((eps * 2 ** mu) / (1 - len(ps) ** -eps)) ** (1 / s_hat)))))
        allowed = order[:k]
        assert t in allowed, (t, k, mu)
        q = p[t] / p[allowed].sum()
        mu -= eta * (-np.log2(q) - tau)
    return mu


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("tau,eta", [(3.0, 0.1), (5.0, 0.3)])
def test_mirostat_matches_reference(version, tau, eta):
    logits = np.random.default_rng(version).normal(0, 2.5, 3000).astype(np.float32)
    s = _core.Sampler(temperature=0.9, mirostat=version, mirostat_tau=tau, mirostat_eta=eta, seed=8)
    assert s.mirostat_mu == pytest.approx(2 * tau)
    tokens = [s.sample(logits) for _ in range(300)]
    mu = mirostat_replay(logits, 0.9, tau, eta, version, tokens)
    assert s.mirostat_mu == pytest.approx(mu, rel=1e-6, abs=1e-6)
    assert len(set(tokens)) > 3
    s.reset()
    assert s.mirostat_mu == pytest.approx(2 * tau)
    # the observed surprise is steered towards tau: the mean over a long run lands near it
    p = np.exp(logits / 0.9 - (logits / 0.9).max())
    p /= p.sum()
    assert abs(np.mean(-np.log2(p[tokens[100:]])) - tau) < 1.5


def dry_reference(logits, hist, mult, base, allowed, breakers, last_n):
    """DRY from its definition: token c loses mult * base^(L - allowed), L the longest length (<= 64,
    >= allowed) such that the context's last L tokens followed by c occur earlier in the context,
    the L tokens holding no breaker and c not a breaker (a search over every candidate)."""
    h = list(hist[-last_n:]) if last_n > 0 else list(hist)
    out = np.array(logits, np.float64)
    n = len(h)
    for c in range(len(out)):
        if c in breakers:
            continue
        for L in range(min(64, n - 1), allowed - 1, -1):
            tail = h[n - L:]
            if any(t in breakers for t in tail):
                continue
            seq = tail + [c]
            if any(h[s:s + L + 1] == seq for s in range(0, n - L)):
                out[c] -= mult * base ** (L - allowed)
                break
    return out


@pytest.mark.parametrize("seed", range(4))
def test_dry_penalty_matches_definition(seed):
    rng = np.random.default_rng(seed)
    vocab = 12
    logits = rng.normal(0, 1, vocab).astype(np.float32)
    # a history with repeats: a random phrase said three times with noise in between
    phrase = list(rng.integers(0, vocab, 6))
    hist = phrase + list(rng.integers(0, vocab, 3)) + phrase + list(rng.integers(0, vocab, 2)) + phrase[:4]
    breakers = [int(rng.integers(0, vocab))] if seed % 2 else []
    kw = dict(dry_multiplier=0.8, dry_base=1.75, dry_allowed_length=2, dry_penalty_last_n=-1 if seed < 2 else 15)
    s = _core.Sampler(temperature=1.0, repeat_last_n=0, dry_breakers=breakers, **kw)
    s.accept_many([int(t) for t in hist])
    got = s.apply_penalties(logits)
    want = dry_reference(logits, [int(t) for t in hist], kw["dry_multiplier"], kw["dry_base"],
                         kw["dry_allowed_length"], set(breakers), kw["dry_penalty_last_n"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if not breakers:
        assert (got < logits).any()                 # the repeats are penalized
    s.reset()
    assert np.array_equal(s.apply_penalties(logits), logits)
    with pytest.raises(ValueError, match="dry_base"):
        _core.Sampler(dry_multiplier=1.0, dry_base=0.5)
