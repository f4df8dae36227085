// Code point ranges -> UTF-8 byte-range sequences, so that character classes can be matched one
// byte at a time (a token may end in the middle of a character). The split follows the usual
// construction (as in RE2 / regex-syntax's Utf8Sequences, written from the description): cut the
// range where the encoded length changes, then where a continuation byte would not span its full
// 0x80..0xBF range; what is left encodes as independent per-byte ranges.
#include <cstdint>
#include <vector>

#include "ggmlpy/grammar.h"

namespace ggmlpy {
namespace grammar {
namespace {

int encode(uint32_t cp, uint8_t* out) {
    if (cp < 0x80) {
        out[0] = uint8_t(cp);
        return 1;
    }
    if (cp < 0x800) {
        out[0] = uint8_t(0xC0 | (cp >> 6));
        out[1] = uint8_t(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = uint8_t(0xE0 | (cp >> 12));
        out[1] = uint8_t(0x80 | ((cp >> 6) & 0x3F));
        out[2] = uint8_t(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = uint8_t(0xF0 | (cp >> 18));
    out[1] = uint8_t(0x80 | ((cp >> 12) & 0x3F));
    out[2] = uint8_t(0x80 | ((cp >> 6) & 0x3F));
    out[3] = uint8_t(0x80 | (cp & 0x3F));
    return 4;
}

// Recursion depth is bounded: each level fixes a length class or one more continuation byte.
void split(uint32_t lo, uint32_t hi, std::vector<std::vector<ByteRange>>& out) {
    static const uint32_t kLenMax[3] = {0x7F, 0x7FF, 0xFFFF};
    for (uint32_t m : kLenMax) {
        if (lo <= m && hi > m) {
            split(lo, m, out);
            split(m + 1, hi, out);
            return;
        }
    }
    uint8_t a[4], b[4];
    const int n = encode(lo, a);
    for (int i = 1; i < n; ++i) {
        const uint32_t m = (uint32_t(1) << (6 * i)) - 1;  // the low i continuation bytes
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0) {
                split(lo, lo | m, out);
                split((lo | m) + 1, hi, out);
                return;
            }
            if ((hi & m) != m) {
                split(lo, (hi & ~m) - 1, out);
                split(hi & ~m, hi, out);
                return;
            }
        }
    }
    encode(hi, b);
    std::vector<ByteRange> seq;
    for (int i = 0; i < n; ++i) seq.emplace_back(a[i], b[i]);
    out.push_back(std::move(seq));
}

}  // namespace

std::vector<std::vector<ByteRange>> utf8_sequences(uint32_t lo, uint32_t hi) {
    std::vector<std::vector<ByteRange>> out;
    if (lo <= hi) split(lo, hi, out);
    return out;
}

}  // namespace grammar
}  // namespace ggmlpy
