// Token sampler: penalties over the last N tokens, then greedy (temperature 0) or temperature,
// top-k, top-p, min-p and a draw from the truncated softmax with the sampler's own seeded RNG.
// Same seed + same logits + same history -> same tokens on every platform (the RNG and the
// uniform draw are defined here, not by the standard library). Not thread-safe.
#pragma once
#include <cstdint>
#include <deque>
#include <random>
#include <vector>

namespace ggmlpy {

struct SamplerParams {
    float temperature = 0.8f;        // <= 0: greedy (argmax of the penalized logits)
    int top_k = 40;                  // <= 0 or >= n_vocab: off
    float top_p = 0.95f;             // 1: off; smallest prefix whose probability mass >= top_p
    float min_p = 0.05f;             // 0: off; keep p_i >= min_p * p_max
    float repetition_penalty = 1.0f; // 1: off; logit > 0 ? logit / rp : logit * rp (each distinct recent token)
    float frequency_penalty = 0.0f;  // logit -= count * frequency_penalty
    float presence_penalty = 0.0f;   // logit -= (count > 0) * presence_penalty
    int repeat_last_n = 64;          // window for the penalties; 0: off, -1: the whole history
    float typical_p = 1.0f;          // 1: off; locally typical set (Meister et al. 2022) of mass >= typical_p
    int mirostat = 0;                // 0: off; 1 / 2: Mirostat v1 / v2 instead of top-k/top-p/min-p/typical
    float mirostat_tau = 5.0f;       // target surprise (bits)
    float mirostat_eta = 0.1f;       // learning rate of mu (mu starts at 2 * tau)
    // DRY ("don't repeat yourself"): a token that would extend a repeat of length L >= allowed
    // (the context's last L tokens, followed by it, occur earlier) loses multiplier * base^(L -
    // allowed) from its logit. Matches stop at a breaker token; L is capped at 64.
    float dry_multiplier = 0.0f;     // 0: off
    float dry_base = 1.75f;
    int dry_allowed_length = 2;
    int dry_penalty_last_n = -1;     // tokens of history looked at; -1: all
    std::vector<int32_t> dry_breakers;  // token ids a repeat cannot run across (e.g. newlines)
    int64_t seed = -1;               // < 0: drawn from std::random_device
};

class Sampler {
public:
    // Throws ValueError naming the parameter (temperature < 0, top_p outside (0, 1], min_p outside
    // [0, 1], repetition_penalty <= 0, repeat_last_n < -1, non-finite values).
    explicit Sampler(const SamplerParams& params);

    // Picks a token from logits[n_vocab] (the history is read, not changed: call accept()).
    // Steps: penalties (repetition / frequency / presence, then DRY) -> (temperature <= 0: argmax) -> logits / T -> top-k -> softmax over the
    // kept set -> min-p -> top-p on those probabilities -> typical-p -> draw. With mirostat:
    // penalties -> logits / T -> softmax -> v1: top-k with k from mu and the estimated Zipf
    // exponent of the 100 most likely; v2: the tokens of surprise -log2 p <= mu -> draw from the
    // renormalized set -> mu -= eta * (surprise of the drawn token - tau). Throws ValueError if
    // n_vocab <= 0 or no finite logit is left.
    int32_t sample(const float* logits, int n_vocab);
    void accept(int32_t id);                    // appends to the penalty history
    void reset();                               // clears the history and mu (keeps the RNG state)
    double mirostat_mu() const { return mu_; }
    void set_seed(int64_t seed);                // re-seeds the RNG (< 0: random)
    int64_t seed() const { return seed_; }      // the effective seed
    const SamplerParams& params() const { return params_; }
    std::vector<int32_t> history() const { return {history_.begin(), history_.end()}; }

    // The penalty step alone, in place on logits[n_vocab], over the current window of history.
    void apply_penalties(float* logits, int n_vocab) const;
    bool has_penalties() const;                 // would apply_penalties change anything
    double uniform();                           // next draw in [0, 1) (53 random bits)

private:
    SamplerParams params_;
    int64_t seed_ = 0;
    std::mt19937_64 rng_;
    std::deque<int32_t> history_;               // most recent last; bounded by repeat_last_n
    std::deque<int32_t> dry_history_;           // most recent last; bounded by dry_penalty_last_n
    std::vector<char> dry_breaker_;             // by token id (ids past its end: not breakers)
    void apply_dry(float* logits, int n_vocab) const;
    void apply_repetition(float* logits, int n_vocab) const;
    std::vector<int32_t> idx_;                  // scratch: candidate ids, reused between calls
    std::vector<float> val_;                    // scratch: candidate logits
    std::vector<float> pen_;                    // scratch: the logits with penalties applied
    double mu_ = 0;                             // mirostat's running surprise bound (2 * tau at start)

    // the draw over ids idx_[0, keep) with weights val_[id], in id order
    int32_t draw(size_t keep);
    int32_t sample_mirostat(const float* l, float best, float inv_t);
    size_t typical_set(size_t keep);   // typical-p over idx_[0, keep): the new keep, set in front
    int n_vocab_ = 0;
};

}  // namespace ggmlpy
