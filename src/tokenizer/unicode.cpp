// UTF-8 decoding, category lookups (binary search over generated range tables) and the GPT-2
// byte <-> unicode mapping. See unicode.h for the contract.
#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace ggmlpy {
namespace unicode {

namespace {
struct CpRange {
    uint32_t lo, hi;
};
#include "tokenizer/unicode_tables.inc"

template <size_t N>
bool in_ranges(const CpRange (&r)[N], uint32_t cp) {
    // first range whose hi >= cp
    const CpRange* it = std::lower_bound(r, r + N, cp, [](const CpRange& a, uint32_t v) { return a.hi < v; });
    return it != r + N && it->lo <= cp;
}

struct ByteMap {
    std::array<std::string, 256> to_unicode;
    std::array<int, 324> to_byte;  // mapped code points are all < 0x144
    ByteMap() {
        to_byte.fill(-1);
        int extra = 0;
        for (int b = 0; b < 256; ++b) {
            bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + extra++);
            to_unicode[b] = encode_utf8(cp);
            to_byte[cp] = b;
        }
    }
};
const ByteMap& byte_map() {
    static const ByteMap m;
    return m;
}
}  // namespace

size_t utf8_len_at(const std::string& s, size_t i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t min;
    if (c < 0x80) return 1;
    else if ((c & 0xE0) == 0xC0) { n = 2; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 3; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 4; min = 0x10000; }
    else return 1;
    if (i + n > s.size()) return 1;
    uint32_t cp = c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
        const unsigned char d = static_cast<unsigned char>(s[i + k]);
        if ((d & 0xC0) != 0x80) return 1;
        cp = (cp << 6) | (d & 0x3F);
    }
    // overlong forms, surrogates and values past U+10FFFF are invalid
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return 1;
    return n;
}

std::vector<CodePoint> decode_utf8(const std::string& s) {
    std::vector<CodePoint> out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const size_t n = utf8_len_at(s, i);
        const unsigned char c = static_cast<unsigned char>(s[i]);
        uint32_t cp;
        if (n == 1) {
            cp = c < 0x80 ? c : 0xFFFD;
        } else {
            cp = c & (0x7F >> n);
            for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        }
        out.push_back({cp, uint32_t(i), uint32_t(n)});
        i += n;
    }
    return out;
}

std::string encode_utf8(uint32_t cp) {
    std::string r;
    if (cp < 0x80) {
        r += char(cp);
    } else if (cp < 0x800) {
        r += char(0xC0 | (cp >> 6));
        r += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        r += char(0xE0 | (cp >> 12));
        r += char(0x80 | ((cp >> 6) & 0x3F));
        r += char(0x80 | (cp & 0x3F));
    } else {
        r += char(0xF0 | (cp >> 18));
        r += char(0x80 | ((cp >> 12) & 0x3F));
        r += char(0x80 | ((cp >> 6) & 0x3F));
        r += char(0x80 | (cp & 0x3F));
    }
    return r;
}

bool is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(kLetterRanges, cp);
}
bool is_number(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(kNumberRanges, cp);
}
bool is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return in_ranges(kSpaceRanges, cp);
}

const std::string& byte_to_unicode(uint8_t b) { return byte_map().to_unicode[b]; }
int unicode_to_byte(uint32_t cp) { return cp < 324 ? byte_map().to_byte[cp] : -1; }

}  // namespace unicode
}  // namespace ggmlpy
