// Sampler implementation (see include/ggmlpy/sampler.h for the contract and the order of steps).
// Candidates are kept as (id, logit) pairs; only the set that can survive truncation is sorted,
// so a 50k vocabulary costs one linear pass plus a short sort per token.
#include "ggmlpy/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_map>

#include "ggmlpy/error.h"

namespace ggmlpy {

namespace {
void check_param(bool ok, const char* name, double v, const char* expected) {
    if (!ok) throw ValueError(std::string("sampler: ") + name + " = " + std::to_string(v) +
                              ", expected " + expected);
}
}  // namespace

Sampler::Sampler(const SamplerParams& p) : params_(p) {
    check_param(std::isfinite(p.temperature) && p.temperature >= 0, "temperature", p.temperature, ">= 0");
    check_param(std::isfinite(p.top_p) && p.top_p > 0 && p.top_p <= 1, "top_p", p.top_p, "in (0, 1]");
    check_param(std::isfinite(p.min_p) && p.min_p >= 0 && p.min_p <= 1, "min_p", p.min_p, "in [0, 1]");
    check_param(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0, "repetition_penalty",
                p.repetition_penalty, "> 0");
    check_param(std::isfinite(p.frequency_penalty), "frequency_penalty", p.frequency_penalty, "a finite number");
    check_param(std::isfinite(p.presence_penalty), "presence_penalty", p.presence_penalty, "a finite number");
    check_param(p.repeat_last_n >= -1, "repeat_last_n", p.repeat_last_n, ">= -1 (-1: whole history, 0: off)");
    check_param(std::isfinite(p.typical_p) && p.typical_p > 0 && p.typical_p <= 1, "typical_p", p.typical_p,
                "in (0, 1]");
    check_param(p.mirostat >= 0 && p.mirostat <= 2, "mirostat", p.mirostat, "0 (off), 1 or 2");
    check_param(std::isfinite(p.mirostat_tau) && p.mirostat_tau > 0, "mirostat_tau", p.mirostat_tau, "> 0");
    check_param(std::isfinite(p.mirostat_eta) && p.mirostat_eta >= 0, "mirostat_eta", p.mirostat_eta, ">= 0");
    check_param(std::isfinite(p.dry_multiplier) && p.dry_multiplier >= 0, "dry_multiplier", p.dry_multiplier, ">= 0");
    check_param(std::isfinite(p.dry_base) && p.dry_base >= 1, "dry_base", p.dry_base, ">= 1");
    check_param(p.dry_allowed_length >= 1, "dry_allowed_length", p.dry_allowed_length, ">= 1");
    check_param(p.dry_penalty_last_n >= -1, "dry_penalty_last_n", p.dry_penalty_last_n, ">= -1 (-1: all)");
    for (int32_t id : p.dry_breakers) {
        check_param(id >= 0, "dry_breakers", id, "token ids >= 0");
        if ((size_t)id >= dry_breaker_.size()) dry_breaker_.resize((size_t)id + 1, 0);
        dry_breaker_[(size_t)id] = 1;
    }
    mu_ = 2.0 * p.mirostat_tau;
    set_seed(p.seed);
}

void Sampler::set_seed(int64_t seed) {
    if (seed < 0) {
        std::random_device rd;
        seed = (int64_t)((((uint64_t)rd() << 32) | rd()) & 0x7fffffffffffffffULL);
    }
    seed_ = seed;
    rng_.seed((uint64_t)seed);
}

double Sampler::uniform() {
    return (double)(rng_() >> 11) * (1.0 / 9007199254740992.0);  // 53 bits -> [0, 1)
}

void Sampler::accept(int32_t id) {
    if (params_.dry_multiplier > 0 && params_.dry_penalty_last_n != 0) {
        dry_history_.push_back(id);
        if (params_.dry_penalty_last_n > 0)
            while ((int)dry_history_.size() > params_.dry_penalty_last_n) dry_history_.pop_front();
    }
    if (params_.repeat_last_n == 0) return;
    history_.push_back(id);
    if (params_.repeat_last_n > 0)
        while ((int)history_.size() > params_.repeat_last_n) history_.pop_front();
}

void Sampler::reset() {
    history_.clear();
    dry_history_.clear();
    mu_ = 2.0 * params_.mirostat_tau;
}

void Sampler::apply_penalties(float* logits, int n_vocab) const {
    const SamplerParams& p = params_;
    // repetition / frequency / presence first, then DRY (llama.cpp's order)
    if (!history_.empty() && p.repeat_last_n != 0 &&
        (p.repetition_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f))
        apply_repetition(logits, n_vocab);
    if (p.dry_multiplier > 0) apply_dry(logits, n_vocab);
}

void Sampler::apply_repetition(float* logits, int n_vocab) const {
    const SamplerParams& p = params_;
    std::unordered_map<int32_t, int> count;
    for (int32_t id : history_)
        if (id >= 0 && id < n_vocab) ++count[id];
    for (const auto& [id, c] : count) {
        float& l = logits[id];
        // repetition penalty (CTRL paper / HF): shrink positive logits, push negative ones further down
        l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
        // OpenAI-style additive penalties
        l -= (float)c * p.frequency_penalty + p.presence_penalty;
    }
}

bool Sampler::has_penalties() const {
    const SamplerParams& p = params_;
    if (p.dry_multiplier > 0 && (int)dry_history_.size() > p.dry_allowed_length) return true;
    return !history_.empty() && p.repeat_last_n != 0 &&
           (p.repetition_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f);
}

// DRY over dry_history_ h[0..n): for each earlier position j < n - 1, L(j) = how many tokens
// before j equal the context's last tokens (h[j-1-i] == h[n-1-i], none a breaker, i < 64); token
// h[j] then continues a repeat of length L(j). Each token takes its largest L; at L >= allowed its
// logit loses multiplier * base^(L - allowed).
void Sampler::apply_dry(float* logits, int n_vocab) const {
    const SamplerParams& p = params_;
    const std::vector<int32_t> h(dry_history_.begin(), dry_history_.end());
    const int n = (int)h.size();
    const auto breaker = [&](int32_t id) { return (size_t)id < dry_breaker_.size() && dry_breaker_[(size_t)id]; };
    if (n < 2 || breaker(h[n - 1])) return;
    std::unordered_map<int32_t, int> longest;
    for (int j = 1; j < n; ++j) {   // h[j] after h[..j-1]; j == n would be the token being drawn
        const int32_t next = h[j];
        if (next < 0 || next >= n_vocab || breaker(next)) continue;
        int L = 0;
        while (L < 64 && L < j && h[j - 1 - L] == h[n - 1 - L] && !breaker(h[n - 1 - L])) ++L;
        if (L >= p.dry_allowed_length) {
            int& best = longest[next];
            best = std::max(best, L);
        }
    }
    for (const auto& [id, L] : longest)
        logits[id] -= p.dry_multiplier * std::pow(p.dry_base, (float)(L - p.dry_allowed_length));
}

int32_t Sampler::sample(const float* logits, int n_vocab) {
    if (n_vocab <= 0) throw ValueError("sampler: n_vocab = " + std::to_string(n_vocab) + ", expected > 0");
    const SamplerParams& p = params_;
    // the logits are copied only when penalties change some of them
    const float* l = logits;
    if (has_penalties()) {
        pen_.assign(logits, logits + n_vocab);
        apply_penalties(pen_.data(), n_vocab);
        l = pen_.data();
    }

    // candidates: finite logits only (-inf marks banned tokens, NaN is rejected by omission)
    float best = -INFINITY;
    int32_t best_id = -1;
    int n_finite = 0;
    for (int i = 0; i < n_vocab; ++i) {
        if (!std::isfinite(l[i])) continue;
        ++n_finite;
        if (l[i] > best) { best = l[i]; best_id = i; }
    }
    if (best_id < 0) throw ValueError("sampler: no finite logit among " + std::to_string(n_vocab));
    if (p.temperature <= 0) return best_id;   // greedy: first argmax

    const float inv_t = 1.0f / p.temperature;
    if (p.mirostat) {
        n_vocab_ = n_vocab;
        return sample_mirostat(l, best, inv_t);
    }
    // order: larger logit first, ties broken by smaller id, so results do not depend on std::sort
    // (a strict total order: the top-k set is unique, however it is found)
    auto before = [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };

    idx_.clear();
    if (p.top_k > 0 && p.top_k < n_finite) {
        // the k first in that order, one pass with a heap whose top is the last of the k kept
        // (most ids lose one compare against it); a sort over the vocabulary took ~0.5 ms
        for (int i = 0; i < n_vocab; ++i) {
            if (!std::isfinite(l[i])) continue;
            if ((int)idx_.size() < p.top_k) {
                idx_.push_back(i);
                std::push_heap(idx_.begin(), idx_.end(), before);
            } else if (before(i, idx_.front())) {
                std::pop_heap(idx_.begin(), idx_.end(), before);
                idx_.back() = i;
                std::push_heap(idx_.begin(), idx_.end(), before);
            }
        }
    } else {
        for (int i = 0; i < n_vocab; ++i)
            if (std::isfinite(l[i])) idx_.push_back(i);
    }
    // unnormalized probabilities relative to the max: w_i = exp((l_i - l_max) / T), w_max = 1
    const size_t n = idx_.size();
    val_.resize(n_vocab);
    double z = 0;
    for (int32_t id : idx_) {
        float w = std::exp((l[id] - best) * inv_t);
        val_[id] = w;
        z += w;
    }
    // min-p keeps w_i >= min_p (w_max = 1); survivors are a prefix of the sorted order, so only
    // they need sorting and top-p can walk them with the full normalizer z.
    size_t m = n;
    if (p.min_p > 0) {
        auto it = std::partition(idx_.begin(), idx_.end(), [&](int32_t id) { return val_[id] >= p.min_p; });
        m = (size_t)(it - idx_.begin());
    }
    size_t keep = m;
    if (p.top_p < 1.0f) {
        // sort growing prefixes until the mass reaches top_p
        double cum = 0;
        size_t walked = 0, sorted = 0, chunk = 64;
        keep = 0;
        while (keep == 0) {
            size_t upto = std::min(m, sorted + chunk);
            std::partial_sort(idx_.begin() + sorted, idx_.begin() + upto, idx_.begin() + m, before);
            sorted = upto;
            for (; walked < sorted; ++walked) {
                cum += val_[idx_[walked]] / z;
                if (cum >= p.top_p) { keep = walked + 1; break; }
            }
            if (keep == 0 && sorted == m) keep = m;
            chunk *= 8;
        }
    }
    if (p.typical_p < 1.0f) keep = typical_set(keep);
    return draw(keep);
}

int32_t Sampler::draw(size_t keep) {
    // draw over the kept set in id order, so the result does not depend on how it was selected
    std::sort(idx_.begin(), idx_.begin() + keep);
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += val_[idx_[i]];
    const double u = uniform() * total;
    double acc = 0;
    for (size_t i = 0; i < keep; ++i) {
        acc += val_[idx_[i]];
        if (u < acc) return idx_[i];
    }
    return idx_[keep - 1];
}

// Locally typical sampling over idx_[0, keep) (weights val_): p_i renormalized over the set,
// H = -sum p log p; the tokens ordered by |-log p_i - H| (ties: larger p, then smaller id), and the
// shortest prefix of that order whose mass reaches typical_p is kept (at least one token).
size_t Sampler::typical_set(size_t keep) {
    double z = 0;
    for (size_t i = 0; i < keep; ++i) z += val_[idx_[i]];
    double h = 0;
    for (size_t i = 0; i < keep; ++i) {
        const double q = val_[idx_[i]] / z;
        if (q > 0) h -= q * std::log(q);
    }
    std::vector<std::pair<double, int32_t>> score(keep);
    for (size_t i = 0; i < keep; ++i) {
        const double q = val_[idx_[i]] / z;
        score[i] = {q > 0 ? std::fabs(-std::log(q) - h) : INFINITY, idx_[i]};
    }
    std::sort(score.begin(), score.end(), [&](const auto& a, const auto& b) {
        if (a.first != b.first) return a.first < b.first;
        if (val_[a.second] != val_[b.second]) return val_[a.second] > val_[b.second];
        return a.second < b.second;
    });
    double cum = 0;
    size_t n = 0;
    while (n < keep) {
        cum += val_[score[n].second] / z;
        idx_[n] = score[n].second;
        ++n;
        if (cum >= params_.typical_p) break;
    }
    for (size_t i = n; i < keep; ++i) idx_[i] = score[i].second;
    return n;
}

// Mirostat (Basu et al. 2021) over every finite candidate in idx_: weights w = exp((l - best) / T).
int32_t Sampler::sample_mirostat(const float* l, float best, float inv_t) {
    const SamplerParams& p = params_;
    idx_.clear();
    for (int i = 0; i < n_vocab_; ++i)
        if (std::isfinite(l[i])) idx_.push_back(i);
    const size_t n = idx_.size();
    double z = 0;
    std::vector<double> w(n);
    for (size_t i = 0; i < n; ++i) {
        w[i] = std::exp((double)(l[idx_[i]] - best) * inv_t);
        z += w[i];
    }
    // most likely first (ties: smaller id)
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return w[a] > w[b] || (w[a] == w[b] && idx_[a] < idx_[b]);
    });
    size_t keep = 1;
    if (p.mirostat == 1) {
        // Zipf exponent estimated from the m most likely: s = sum t_i b_i / sum t_i^2,
        // t_i = log((i + 2) / (i + 1)), b_i = log(p_i / p_{i+1})
        const size_t m = std::min<size_t>(100, n);
        double num = 0, den = 0;
        for (size_t i = 0; i + 1 < m; ++i) {
            const double t = std::log((double)(i + 2) / (double)(i + 1));
            const double b = std::log(w[order[i]] / w[order[i + 1]]);
            if (!std::isfinite(b)) continue;
            num += t * b;
            den += t * t;
        }
        const double s_hat = den > 0 ? num / den : 1.0;
        const double eps = s_hat - 1.0;
        double k = eps != 0 ? std::pow((eps * std::pow(2.0, mu_)) / (1.0 - std::pow((double)n, -eps)), 1.0 / s_hat)
                            : (double)n;
        if (!std::isfinite(k)) k = (double)n;
        keep = (size_t)std::max(1.0, std::min((double)n, std::round(k)));
    } else {
        // v2: the tokens whose surprise -log2(p) is at most mu, the most likely always
        while (keep < n && -std::log2(w[order[keep]] / z) <= mu_) ++keep;
    }
    double zk = 0;
    for (size_t i = 0; i < keep; ++i) zk += w[order[i]];
    // draw in id order over the kept set
    std::vector<size_t> kept(order.begin(), order.begin() + keep);
    std::sort(kept.begin(), kept.end(), [&](size_t a, size_t b) { return idx_[a] < idx_[b]; });
    const double u = uniform() * zk;
    double acc = 0;
    size_t pick = kept.back();
    for (size_t i : kept) {
        acc += w[i];
        if (u < acc) { pick = i; break; }
    }
    const double surprise = -std::log2(w[pick] / zk);
    mu_ -= p.mirostat_eta * (surprise - p.mirostat_tau);
    return idx_[pick];
}

}  // namespace ggmlpy
