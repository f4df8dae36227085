// Model::eval_batch on SmolLM2 (GGMLPY_TEST_MODEL): each sequence's logits equal, bit for bit, a
// one-sequence model's eval of the same tokens, with n_batch small enough that entries are split
// across chunks; copy_seq and truncate_seq; bad input throws. Also run under ASan + UBSan
// (tests/run_sanitizers.sh), which checks the chunk packing and the cell copies stay in bounds.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "ggmlpy/error.h"
#include "ggmlpy/model.h"

using namespace ggmlpy;
using Ids = std::vector<int32_t>;

namespace {

std::string model_path() {
    if (const char* env = std::getenv("GGMLPY_TEST_MODEL")) return env;
    std::string here = __FILE__;
    return here.substr(0, here.rfind('/')) + "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::vector<float> solo(Model& m, const Ids& prefix, const Ids& ids) {
    m.reset();
    std::vector<float> out((size_t)m.n_vocab());
    if (!prefix.empty()) m.eval(prefix.data(), (int64_t)prefix.size(), false, out.data());
    m.eval(ids.data(), (int64_t)ids.size(), false, out.data());
    return out;
}

bool same_bits(const float* a, const float* b, int n) { return std::memcmp(a, b, (size_t)n * sizeof(float)) == 0; }

}  // namespace

int main() {
    ModelParams p;
    p.n_ctx = 64;
    p.n_threads = 2;
    std::unique_ptr<Model> one, many;
    try {
        one = Model::load(model_path(), p);
        p.n_seq_max = 4;
        p.n_batch = 5;  // entries longer than the room left in a chunk continue in the next one
        many = Model::load(model_path(), p);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s (fetch the model as the README says, or set GGMLPY_TEST_MODEL)\n", e.what());
        CHECK(!"SmolLM2 GGUF not found");
        return test_exit_code("test_batch");
    }
    const int nv = many->n_vocab();
    CHECK(many->n_seq_max() == 4 && one->n_seq_max() == 1);
    const std::vector<Ids> prompts = {{504, 3458, 282, 253, 1308}, {1}, {4, 5, 6, 7, 8, 9, 10, 11, 12}, {100, 200}};

    // prefill four sequences in shared chunks of 5 rows, then one decode step for three of them
    std::vector<SeqTokens> batch;
    for (int s = 0; s < 4; ++s) batch.push_back({s, prompts[(size_t)s].data(), (int64_t)prompts[(size_t)s].size()});
    std::vector<float> logits((size_t)4 * nv);
    many->eval_batch(batch, logits.data());
    for (int s = 0; s < 4; ++s) {
        CHECK(many->n_past_seq(s) == (int)prompts[(size_t)s].size());
        CHECK(same_bits(logits.data() + (size_t)s * nv, solo(*one, {}, prompts[(size_t)s]).data(), nv));
    }
    const Ids next = {42};
    std::vector<SeqTokens> step = {{2, next.data(), 1}, {0, next.data(), 1}, {3, next.data(), 1}};
    many->eval_batch(step, logits.data());
    const int order[3] = {2, 0, 3};
    for (int r = 0; r < 3; ++r)
        CHECK(same_bits(logits.data() + (size_t)r * nv, solo(*one, prompts[(size_t)order[r]], next).data(), nv));

    // fork: sequence 1 becomes a copy of sequence 2 (prompt + 42), then both continue alike
    many->copy_seq(2, 1);
    CHECK(many->n_past_seq(1) == many->n_past_seq(2));
    const Ids more = {7, 8};
    std::vector<SeqTokens> fork = {{1, more.data(), 2}, {2, more.data(), 2}};
    many->eval_batch(fork, logits.data());
    CHECK(same_bits(logits.data(), logits.data() + nv, nv));
    many->truncate_seq(1, 3);
    CHECK(many->n_past_seq(1) == 3);

    // bad input: a clear exception, nothing evaluated
    const int past0 = many->n_past_seq(0);
    std::vector<SeqTokens> dup = {{0, next.data(), 1}, {0, next.data(), 1}};
    CHECK_THROWS(many->eval_batch(dup, logits.data()), ValueError);
    std::vector<SeqTokens> outside = {{4, next.data(), 1}};
    CHECK_THROWS(many->eval_batch(outside, logits.data()), ValueError);
    const Ids bad = {nv};
    std::vector<SeqTokens> bad_id = {{0, bad.data(), 1}};
    CHECK_THROWS(many->eval_batch(bad_id, logits.data()), ValueError);
    const Ids full(64, 5);
    std::vector<SeqTokens> too_long = {{0, full.data(), 64}};
    CHECK_THROWS(many->eval_batch(too_long, logits.data()), ContextFullError);
    CHECK_THROWS(many->truncate_seq(0, past0 + 1), ValueError);
    CHECK_THROWS(many->copy_seq(0, 9), ValueError);
    CHECK(many->n_past_seq(0) == past0);
    return test_exit_code("test_batch");
}
