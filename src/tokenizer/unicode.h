// Unicode helpers for the tokenizers: UTF-8 decoding that never fails (an invalid byte becomes
// one code point of its own, flagged, so the original bytes survive), the categories the
// pre-tokenizer regexes use (\p{L}, \p{N}, \s; tables in unicode_tables.inc), and the GPT-2
// byte <-> unicode mapping of byte-level BPE.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ggmlpy {
namespace unicode {

// One decoded code point and where it sits in the source bytes.
struct CodePoint {
    uint32_t cp;      // U+FFFD for an invalid byte
    uint32_t offset;  // byte offset in the source
    uint32_t len;     // bytes (1..4)
};

// Decodes `s`; an invalid or truncated sequence yields one entry of len 1 per bad byte.
std::vector<CodePoint> decode_utf8(const std::string& s);
// Byte length of the UTF-8 sequence starting at s[i] (1 for an invalid or truncated start).
size_t utf8_len_at(const std::string& s, size_t i);
std::string encode_utf8(uint32_t cp);

bool is_letter(uint32_t cp);  // general category L*
bool is_number(uint32_t cp);  // general category N*
bool is_space(uint32_t cp);   // White_Space, as regex \s
inline bool is_crlf(uint32_t cp) { return cp == '\r' || cp == '\n'; }

// GPT-2 byte-level mapping: every byte to a printable code point (printable Latin-1 bytes map to
// themselves, the others to U+0100.. in order), so merges operate on visible text.
const std::string& byte_to_unicode(uint8_t b);  // UTF-8 of the mapped code point
// Inverse; returns -1 for a code point that no byte maps to.
int unicode_to_byte(uint32_t cp);

}  // namespace unicode
}  // namespace ggmlpy
