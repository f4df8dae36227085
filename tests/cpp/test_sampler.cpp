// Sampler tests: greedy = argmax, truncation restricts the support (top-k, top-p, min-p computed
// here from the definitions with a naive sort), empirical frequencies match the truncated softmax,
// penalties change logits exactly as defined, same seed -> same tokens, bad parameters throw.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "check.h"
#include "ggmlpy/error.h"
#include "ggmlpy/sampler.h"

using ggmlpy::Sampler;
using ggmlpy::SamplerParams;

static std::vector<float> random_logits(int n, uint32_t seed, float scale = 3.0f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

// Exact target distribution by the definition, written independently of the sampler:
// sort descending; keep top_k; softmax(l / T) over them; top-p prefix; min-p; renormalize.
static std::vector<double> expected_probs(const std::vector<float>& l, float T, int k, float top_p, float min_p) {
    const int n = (int)l.size();
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
    if (k > 0 && k < n) order.resize(k);
    std::vector<double> p(order.size());
    double z = 0;
    for (size_t i = 0; i < order.size(); ++i) z += (p[i] = std::exp((double)(l[order[i]] - l[order[0]]) / T));
    for (auto& x : p) x /= z;
    size_t keep = p.size();
    if (top_p < 1) {
        double cum = 0;
        for (size_t i = 0; i < p.size(); ++i) { cum += p[i]; if (cum >= top_p) { keep = i + 1; break; } }
    }
    size_t keep_min = 0;
    while (keep_min < p.size() && p[keep_min] >= min_p * p[0]) ++keep_min;
    keep = std::min(keep, min_p > 0 ? keep_min : keep);
    std::vector<double> out(n, 0.0);
    double s = 0;
    for (size_t i = 0; i < keep; ++i) s += p[i];
    for (size_t i = 0; i < keep; ++i) out[order[i]] = p[i] / s;
    return out;
}

static void test_greedy() {
    for (uint32_t s = 0; s < 20; ++s) {
        auto l = random_logits(1000 + s, s);
        SamplerParams p; p.temperature = 0; p.seed = 1;
        Sampler smp(p);
        int arg = (int)(std::max_element(l.begin(), l.end()) - l.begin());
        CHECK(smp.sample(l.data(), (int)l.size()) == arg);
    }
    // ties: the first maximum wins
    std::vector<float> t = {1, 5, 2, 5, 5};
    SamplerParams p; p.temperature = 0;
    Sampler smp(p);
    CHECK(smp.sample(t.data(), 5) == 1);
    // -inf entries are never chosen, all -inf throws
    std::vector<float> inf = {-INFINITY, -INFINITY, -3.0f};
    CHECK(smp.sample(inf.data(), 3) == 2);
    std::vector<float> allinf = {-INFINITY, -INFINITY};
    CHECK_THROWS(smp.sample(allinf.data(), 2), ggmlpy::ValueError);
    CHECK_THROWS(smp.sample(allinf.data(), 0), ggmlpy::ValueError);
}

static void test_support_and_distribution() {
    struct Case { float T; int k; float top_p; float min_p; };
    const Case cases[] = {{1.0f, 0, 1.0f, 0.0f}, {0.7f, 5, 1.0f, 0.0f}, {1.0f, 0, 0.6f, 0.0f},
                          {1.3f, 0, 1.0f, 0.2f}, {0.9f, 8, 0.8f, 0.05f}, {2.0f, 3, 0.5f, 0.0f}};
    uint32_t seed = 100;
    for (const Case& c : cases) {
        auto l = random_logits(40, seed++, 1.5f);
        auto e = expected_probs(l, c.T, c.k, c.top_p, c.min_p);
        SamplerParams p; p.temperature = c.T; p.top_k = c.k; p.top_p = c.top_p; p.min_p = c.min_p; p.seed = 7;
        Sampler smp(p);
        const int draws = 40000;
        std::vector<int> cnt(l.size(), 0);
        for (int i = 0; i < draws; ++i) ++cnt[smp.sample(l.data(), (int)l.size())];
        // support: nothing outside the truncated set
        int outside = 0, dof = -1;
        double chi2 = 0;
        for (size_t i = 0; i < l.size(); ++i) {
            if (e[i] == 0) { outside += cnt[i]; continue; }
            ++dof;
            double ex = e[i] * draws;
            chi2 += (cnt[i] - ex) * (cnt[i] - ex) / ex;
        }
        CHECK(outside == 0);
        // chi-square: mean dof, sd sqrt(2 dof); 6 sd is a bound a correct sampler essentially never
        // exceeds while a wrong truncation or temperature blows far past it
        double bound = dof + 6.0 * std::sqrt(2.0 * std::max(dof, 1)) + 10;
        if (!(chi2 <= bound)) std::fprintf(stderr, "case T=%g k=%d p=%g minp=%g chi2=%g bound=%g\n",
                                          c.T, c.k, c.top_p, c.min_p, chi2, bound);
        CHECK(chi2 <= bound);
    }
}

static void test_seed() {
    auto l = random_logits(5000, 3, 2.0f);
    SamplerParams p; p.temperature = 1.0f; p.top_k = 0; p.top_p = 1.0f; p.min_p = 0; p.seed = 1234;
    Sampler a(p), b(p);
    std::vector<int> ra, rb;
    for (int i = 0; i < 200; ++i) { ra.push_back(a.sample(l.data(), 5000)); rb.push_back(b.sample(l.data(), 5000)); }
    CHECK(ra == rb);
    p.seed = 1235;
    Sampler c(p);
    std::vector<int> rc;
    for (int i = 0; i < 200; ++i) rc.push_back(c.sample(l.data(), 5000));
    CHECK(ra != rc);
    a.set_seed(1234);
    std::vector<int> ra2;
    for (int i = 0; i < 200; ++i) ra2.push_back(a.sample(l.data(), 5000));
    CHECK(ra == ra2);
    p.seed = -1;
    Sampler r(p);
    CHECK(r.seed() >= 0);
}

static void test_penalties() {
    std::vector<float> l = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 0.0f};
    SamplerParams p; p.repetition_penalty = 2.0f; p.frequency_penalty = 0.25f; p.presence_penalty = 0.5f;
    p.repeat_last_n = 4;
    Sampler s(p);
    for (int id : {3, 0, 1, 1, 1, 4}) s.accept(id);   // window of 4: {1, 1, 1, 4}
    auto v = l;
    s.apply_penalties(v.data(), 6);
    CHECK_NEAR(v[0], 2.0f, 0);                             // left the window
    CHECK_NEAR(v[3], 3.0f, 0);
    CHECK_NEAR(v[1], -1.0f * 2.0f - 3 * 0.25f - 0.5f, 1e-6);
    CHECK_NEAR(v[4], -2.0f * 2.0f - 1 * 0.25f - 0.5f, 1e-6);
    CHECK_NEAR(v[2], 0.5f, 0);
    CHECK(s.history().size() == 4);
    // positive logits are divided
    s.reset();
    s.accept(0);
    v = l;
    s.apply_penalties(v.data(), 6);
    CHECK_NEAR(v[0], 2.0f / 2.0f - 0.25f - 0.5f, 1e-6);
    // greedy sees the penalized logits: token 3 (3.0) repeated with penalty 4 -> 0.75 < 2.0
    SamplerParams g; g.temperature = 0; g.repetition_penalty = 4.0f;
    Sampler gs(g);
    gs.accept(3);
    CHECK(gs.sample(l.data(), 6) == 0);
    // repeat_last_n = 0 disables; out-of-vocabulary ids in the history are ignored
    SamplerParams off = g; off.repeat_last_n = 0;
    Sampler os(off);
    os.accept(3);
    CHECK(os.sample(l.data(), 6) == 3);
    gs.accept(1000);
    v = l;
    gs.apply_penalties(v.data(), 6);
    CHECK_NEAR(v[3], 0.75f, 1e-6);
}

static void test_bad_params() {
    auto bad = [](auto mutate) { SamplerParams p; mutate(p); Sampler s(p); };
    CHECK_THROWS(bad([](SamplerParams& p) { p.temperature = -1; }), ggmlpy::ValueError);
    CHECK_THROWS(bad([](SamplerParams& p) { p.top_p = 0; }), ggmlpy::ValueError);
    CHECK_THROWS(bad([](SamplerParams& p) { p.top_p = 1.5f; }), ggmlpy::ValueError);
    CHECK_THROWS(bad([](SamplerParams& p) { p.min_p = -0.1f; }), ggmlpy::ValueError);
    CHECK_THROWS(bad([](SamplerParams& p) { p.repetition_penalty = 0; }), ggmlpy::ValueError);
    CHECK_THROWS(bad([](SamplerParams& p) { p.repeat_last_n = -2; }), ggmlpy::ValueError);
    CHECK_THROWS(bad([](SamplerParams& p) { p.temperature = NAN; }), ggmlpy::ValueError);
}

int main() {
    test_greedy();
    test_support_and_distribution();
    test_seed();
    test_penalties();
    test_bad_params();
    return test_exit_code("test_sampler");
}
