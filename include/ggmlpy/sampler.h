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
    int64_t seed = -1;               // < 0: drawn from std::random_device
};

class Sampler {
public:
    // Throws ValueError naming the parameter (temperature < 0, top_p outside (0, 1], min_p outside
    // [0, 1], repetition_penalty <= 0, repeat_last_n < -1, non-finite values).
    explicit Sampler(const SamplerParams& params);

    // Picks a token from logits[n_vocab] (the history is read, not changed: call accept()).
    // Steps: penalties -> (temperature <= 0: argmax) -> logits / T -> top-k -> softmax over the
    // kept set -> top-p on those probabilities -> min-p -> draw. Throws ValueError if n_vocab <= 0
    // or no finite logit is left.
    int32_t sample(const float* logits, int n_vocab);
    void accept(int32_t id);                    // appends to the penalty history
    void reset();                               // clears the history (keeps the RNG state)
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
    std::vector<int32_t> idx_;                  // scratch: candidate ids, reused between calls
    std::vector<float> val_;                    // scratch: candidate logits
    std::vector<float> pen_;                    // scratch: the logits with penalties applied
};

}  // namespace ggmlpy
