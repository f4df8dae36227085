// Byte-level BPE encoder (tokenizer.ggml.model = "gpt2"), as HF tokenizers' BPE model with a
// ByteLevel pre-tokenizer: the text is split by the pre-tokenizer named by tokenizer.ggml.pre,
// each piece's bytes are mapped to the GPT-2 byte alphabet, and adjacent symbols are merged by
// merge rank (lowest first, ties: leftmost) until no listed merge applies.
#include <queue>

#include "ggmlpy/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace ggmlpy {

void Tokenizer::Impl::init_bpe() {
    for (int b = 0; b < 256; ++b) byte_symbol[b] = find(unicode::byte_to_unicode(uint8_t(b)));
    merges.reserve(v.merges.size() * 2);
    for (size_t i = 0; i < v.merges.size(); ++i) {
        const std::string& m = v.merges[i];
        const size_t sp = m.find(' ', 1);
        if (sp == std::string::npos || sp + 1 >= m.size())
            throw ValueError("tokenizer.ggml.merges[" + std::to_string(i) + "]: expected 'left right', got '" +
                             m + "'");
        const int32_t a = find(m.substr(0, sp));
        const int32_t b = find(m.substr(sp + 1));
        const int32_t ab = find(m.substr(0, sp) + m.substr(sp + 1));
        // a merge whose parts or result are not tokens can never apply to token symbols
        if (a < 0 || b < 0 || ab < 0) continue;
        merges.emplace(pair_key(a, b), Merge{int32_t(i), ab});  // first listing wins
    }
}

namespace {
struct Sym {
    int32_t id;
    int prev, next;
    size_t off, len;  // bytes of the mapped text
};
struct Cand {
    int32_t rank;
    int pos;     // left symbol
    int32_t id;  // merged id
};
struct CandGreater {
    bool operator()(const Cand& a, const Cand& b) const {
        return a.rank > b.rank || (a.rank == b.rank && a.pos > b.pos);
    }
};
}  // namespace

void Tokenizer::Impl::encode_bpe(const std::string& text, std::vector<int32_t>& out) const {
    std::vector<Sym> sym;
    std::priority_queue<Cand, std::vector<Cand>, CandGreater> queue;
    for (const std::string& word : pretokenize(pre, text)) {
        std::string mapped;
        for (char c : word) mapped += unicode::byte_to_unicode(uint8_t(c));
        if (ignore_merges) {
            const int32_t id = find(mapped);
            if (id >= 0) {
                out.push_back(id);
                continue;
            }
        }
        if (v.merges.empty()) {
            encode_greedy(word, mapped, out);
            continue;
        }
        sym.clear();
        size_t off = 0;
        for (char c : word) {
            const size_t len = unicode::byte_to_unicode(uint8_t(c)).size();
            int32_t id = byte_symbol[uint8_t(c)];
            if (id < 0) id = v.unk;  // HF: the unknown token, or the byte is dropped when none
            if (id >= 0) {
                const int idx = int(sym.size());
                sym.push_back({id, idx - 1, -1, off, len});
                if (idx > 0) sym[size_t(idx - 1)].next = idx;
            }
            off += len;
        }
        if (sym.empty()) continue;
        auto try_add = [&](int l) {
            if (l < 0) return;
            const int r = sym[size_t(l)].next;
            if (r < 0) return;
            auto it = merges.find(pair_key(sym[size_t(l)].id, sym[size_t(r)].id));
            if (it != merges.end()) queue.push({it->second.rank, l, it->second.id});
        };
        for (size_t i = 0; i + 1 < sym.size(); ++i) try_add(int(i));
        while (!queue.empty()) {
            const Cand c = queue.top();
            queue.pop();
            Sym& l = sym[size_t(c.pos)];
            if (l.len == 0 || l.next < 0) continue;
            Sym& r = sym[size_t(l.next)];
            // stale entry: the pair at pos changed since it was queued
            auto it = merges.find(pair_key(l.id, r.id));
            if (it == merges.end() || it->second.id != c.id) continue;
            l.id = c.id;
            l.len += r.len;
            r.len = 0;
            l.next = r.next;
            if (r.next >= 0) sym[size_t(r.next)].prev = c.pos;
            try_add(l.prev);
            try_add(c.pos);
        }
        for (int i = 0; i >= 0; i = sym[size_t(i)].next) out.push_back(sym[size_t(i)].id);
    }
}

// A vocabulary without merges (legacy ggml GPT-J files): longest token that prefixes the rest of
// the word, as the ggml examples did. Approximate: BPE with merges can split differently.
void Tokenizer::Impl::encode_greedy(const std::string& word, const std::string& mapped,
                                    std::vector<int32_t>& out) const {
    // bounds[k] = offset in `mapped` where input byte k starts (mapped symbols are 1-2 bytes)
    std::vector<size_t> bounds(word.size() + 1, 0);
    for (size_t k = 0; k < word.size(); ++k)
        bounds[k + 1] = bounds[k] + unicode::byte_to_unicode(uint8_t(word[k])).size();
    size_t i = 0;
    while (i < word.size()) {
        size_t best_end = 0;
        int32_t best_id = -1;
        for (size_t j = word.size(); j > i; --j) {
            const int32_t id = find(mapped.substr(bounds[i], bounds[j] - bounds[i]));
            if (id >= 0) {
                best_end = j;
                best_id = id;
                break;
            }
        }
        if (best_id < 0) {  // no token starts with this byte: the unknown token, or drop it
            if (v.unk >= 0) out.push_back(v.unk);
            ++i;
            continue;
        }
        out.push_back(best_id);
        i = best_end;
    }
}

}  // namespace ggmlpy
