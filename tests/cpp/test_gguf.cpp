// GGUF reader tests: a file is written byte by byte from the spec (independent of our reader),
// read back in v2 and v3, mapped and in memory; then every truncation and thousands of random
// corruptions must either load or throw FormatError (never crash, hang or read out of bounds).
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "check.h"
#include "ggmlpy/error.h"
#include "ggmlpy/gguf.h"

using namespace ggmlpy;

namespace {

struct Writer {
    std::vector<uint8_t> b;
    template <typename T> void put(T v) {
        uint8_t tmp[sizeof(T)];
        std::memcpy(tmp, &v, sizeof(T));
        b.insert(b.end(), tmp, tmp + sizeof(T));
    }
    void str(const std::string& s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void key(const std::string& k, uint32_t type) { str(k); put<uint32_t>(type); }
    void pad(size_t a) { while (b.size() % a) b.push_back(0); }
};

std::string tmp_path(const char* tag) {
    return std::string("/tmp/ggmlpy_test_gguf_") + std::to_string(getpid()) + "_" + tag + ".gguf";
}
void write_file(const std::string& p, const std::vector<uint8_t>& b) {
    FILE* f = std::fopen(p.c_str(), "wb");
    if (b.size()) std::fwrite(b.data(), 1, b.size(), f);
    std::fclose(f);
}

// A file with every metadata type and three tensors (f32 [3, 2], f16 [4], q8_0 [32, 2]).
std::vector<uint8_t> make_file(uint32_t version, uint32_t alignment) {
    Writer w;
    w.put<uint32_t>(0x46554747);
    w.put<uint32_t>(version);
    w.put<uint64_t>(3);   // tensors
    w.put<uint64_t>(17);  // kv
    w.key("general.architecture", 8); w.str("llama");
    w.key("general.alignment", 4); w.put<uint32_t>(alignment);
    w.key("k.u8", 0); w.put<uint8_t>(200);
    w.key("k.i8", 1); w.put<int8_t>(-100);
    w.key("k.u16", 2); w.put<uint16_t>(60000);
    w.key("k.i16", 3); w.put<int16_t>(-30000);
    w.key("k.u32", 4); w.put<uint32_t>(4000000000u);
    w.key("k.i32", 5); w.put<int32_t>(-2000000000);
    w.key("k.f32", 6); w.put<float>(1.5f);
    w.key("k.bool", 7); w.put<uint8_t>(1);
    w.key("k.u64", 10); w.put<uint64_t>(1ull << 40);
    w.key("k.i64", 11); w.put<int64_t>(-(1ll << 40));
    w.key("k.f64", 12); w.put<double>(-2.25);
    w.key("k.strs", 9); w.put<uint32_t>(8); w.put<uint64_t>(3); w.str("a"); w.str(""); w.str("\xe2\x96\x81hi");
    w.key("k.f32s", 9); w.put<uint32_t>(6); w.put<uint64_t>(2); w.put<float>(0.5f); w.put<float>(-1.0f);
    w.key("k.i32s", 9); w.put<uint32_t>(5); w.put<uint64_t>(3); w.put<int32_t>(1); w.put<int32_t>(-3); w.put<int32_t>(6);
    // nested: array of 2 arrays of u8
    w.key("k.nested", 9); w.put<uint32_t>(9); w.put<uint64_t>(2);
    w.put<uint32_t>(0); w.put<uint64_t>(1); w.put<uint8_t>(7);
    w.put<uint32_t>(0); w.put<uint64_t>(2); w.put<uint8_t>(8); w.put<uint8_t>(9);
    // tensor infos; offsets are multiples of the alignment
    auto al = [&](uint64_t x) { return (x + alignment - 1) / alignment * alignment; };
    uint64_t off0 = 0, off1 = al(off0 + 24), off2 = al(off1 + 8);
    w.str("t.f32"); w.put<uint32_t>(2); w.put<uint64_t>(3); w.put<uint64_t>(2); w.put<uint32_t>(0); w.put<uint64_t>(off0);
    w.str("t.f16"); w.put<uint32_t>(1); w.put<uint64_t>(4); w.put<uint32_t>(1); w.put<uint64_t>(off1);
    w.str("t.q8"); w.put<uint32_t>(2); w.put<uint64_t>(32); w.put<uint64_t>(2); w.put<uint32_t>(8); w.put<uint64_t>(off2);
    w.pad(alignment);
    size_t data = w.b.size();
    for (int i = 0; i < 6; ++i) w.put<float>((float)i + 0.25f);
    w.pad(alignment);
    CHECK(w.b.size() - data == off1);
    const uint16_t halves[4] = {0x3c00, 0x4000, 0xbc00, 0x0000};  // 1, 2, -1, 0
    for (uint16_t h : halves) w.put<uint16_t>(h);
    w.pad(alignment);
    CHECK(w.b.size() - data == off2);
    for (int r = 0; r < 2; ++r) { w.put<uint16_t>(0x3c00); for (int i = 0; i < 32; ++i) w.put<int8_t>((int8_t)(i - 16 + r)); }
    return w.b;
}

void check_contents(const GGUFFile& g, uint32_t version, uint32_t alignment) {
    CHECK(g.version() == version);
    CHECK(g.alignment() == alignment);
    CHECK(g.kv().size() == 17);
    CHECK(g.require_string("general.architecture") == "llama");
    CHECK(g.require_int("k.u8") == 200);
    CHECK(g.require_int("k.i8") == -100);
    CHECK(g.require_int("k.u16") == 60000);
    CHECK(g.require_int("k.i16") == -30000);
    CHECK(g.require_int("k.u32") == 4000000000ll);
    CHECK(g.require_int("k.i32") == -2000000000);
    CHECK(g.require_float("k.f32") == 1.5);
    CHECK(g.get_bool("k.bool", false) == true);
    CHECK(g.require_int("k.u64") == (1ll << 40));
    CHECK(g.require_int("k.i64") == -(1ll << 40));
    CHECK(g.require_float("k.f64") == -2.25);
    CHECK(g.get_int("absent", 42) == 42);
    auto s = g.get_string_array("k.strs");
    CHECK(s.size() == 3 && s[0] == "a" && s[1].empty() && s[2] == "\xe2\x96\x81hi");
    auto f = g.get_float_array("k.f32s");
    CHECK(f.size() == 2 && f[0] == 0.5f && f[1] == -1.0f);
    auto iv = g.get_int_array("k.i32s");
    CHECK(iv.size() == 3 && iv[0] == 1 && iv[1] == -3 && iv[2] == 6);
    const GGUFValue* n = g.find("k.nested");
    CHECK(n && n->arr_nested.size() == 2 && n->arr_nested[1].arr_int.size() == 2 && n->arr_nested[1].arr_int[1] == 9);
    // wrong-type access names the key
    try { g.require_string("k.u8"); CHECK(false); } catch (const FormatError& e) {
        CHECK(std::string(e.what()).find("k.u8") != std::string::npos);
    }
    CHECK_THROWS(g.require_int("k.f32"), FormatError);
    CHECK_THROWS(g.get_string_array("k.f32s"), FormatError);
    CHECK_THROWS(g.require_int("missing.key"), FormatError);

    CHECK(g.tensors().size() == 3);
    const GGUFTensorInfo& a = g.require_tensor("t.f32");
    CHECK(a.n_dims == 2 && a.ne[0] == 3 && a.ne[1] == 2 && a.type == DType::F32 && a.nbytes == 24);
    CHECK(((const float*)a.data)[5] == 5.25f);
    CHECK((uintptr_t)((const char*)a.data - (const char*)nullptr) % alignment == 0 || alignment > 4096);
    const GGUFTensorInfo& h = g.require_tensor("t.f16");
    CHECK(h.nbytes == 8 && ((const uint16_t*)h.data)[1] == 0x4000);
    const GGUFTensorInfo& q = g.require_tensor("t.q8");
    CHECK(q.type == DType::Q8_0 && q.nbytes == 68 && ((const int8_t*)q.data)[34 + 2 + 31] == 16);
    CHECK(g.find_tensor("nope") == nullptr);
    try { g.require_tensor("nope"); CHECK(false); } catch (const FormatError& e) {
        CHECK(std::string(e.what()).find("'nope'") != std::string::npos);
    }
}

// Opening must either succeed or throw FormatError; anything else (crash, other type) fails.
int open_outcome(const std::string& p) {
    try {
        auto g = GGUFFile::open(p);
        // touch every tensor byte: a bad bound would fault or be caught by ASan here
        unsigned sum = 0;
        for (const auto& t : g->tensors())
            for (size_t i = 0; i < t.nbytes; ++i) sum += ((const uint8_t*)t.data)[i];
        (void)sum;
        return 0;
    } catch (const FormatError&) {
        return 1;
    }
}

}  // namespace

int main() {
    for (uint32_t version : {2u, 3u}) {
        for (uint32_t alignment : {32u, 64u, 8u}) {
            auto bytes = make_file(version, alignment);
            std::string p = tmp_path("ok");
            write_file(p, bytes);
            for (bool mm : {true, false}) {
                GGUFOpenOptions o;
                o.use_mmap = mm;
                auto g = GGUFFile::open(p, o);
                CHECK(g->mmapped() == mm);
                check_contents(*g, version, alignment);
            }
            std::remove(p.c_str());
        }
    }

    auto good = make_file(3, 32);
    std::string p = tmp_path("bad");

    // every truncation point throws FormatError naming the file
    int loaded = 0;
    for (size_t n = 0; n < good.size(); ++n) {
        write_file(p, std::vector<uint8_t>(good.begin(), good.begin() + n));
        try {
            GGUFFile::open(p);
            ++loaded;
        } catch (const FormatError& e) {
            if (std::string(e.what()).find(p) == std::string::npos) {
                CHECK(!"message names the file");
                break;
            }
        }
    }
    CHECK(loaded == 0);

    // random corruption: load or FormatError, nothing else
    std::mt19937 rng(1234);
    int errors = 0;
    for (int it = 0; it < 3000; ++it) {
        auto b = good;
        int nflip = 1 + (int)(rng() % 4);
        for (int k = 0; k < nflip; ++k) {
            size_t pos = rng() % b.size();
            b[pos] = (it % 3 == 0) ? 0xff : (uint8_t)rng();
        }
        write_file(p, b);
        errors += open_outcome(p);
    }
    std::printf("corruption: %d of 3000 rejected\n", errors);
    CHECK(errors > 100);

    // specific malformed files
    {
        write_file(p, {});
        try { GGUFFile::open(p); CHECK(false); } catch (const FormatError& e) {
            CHECK(std::string(e.what()).find("empty") != std::string::npos);
        }
        write_file(p, {'G', 'G', 'M', 'L', 1, 0, 0, 0});
        try { GGUFFile::open(p); CHECK(false); } catch (const FormatError& e) {
            CHECK(std::string(e.what()).find("not a GGUF file") != std::string::npos);
        }
        // absurd string length in the first key
        Writer w;
        w.put<uint32_t>(0x46554747); w.put<uint32_t>(3); w.put<uint64_t>(0); w.put<uint64_t>(1);
        w.put<uint64_t>(~0ull >> 1); w.put<uint32_t>(0);
        for (int i = 0; i < 64; ++i) w.put<uint8_t>(0);
        write_file(p, w.b);
        try { GGUFFile::open(p); CHECK(false); } catch (const FormatError& e) {
            CHECK(std::string(e.what()).find("string length") != std::string::npos);
        }
        // absurd array count
        Writer a;
        a.put<uint32_t>(0x46554747); a.put<uint32_t>(3); a.put<uint64_t>(0); a.put<uint64_t>(1);
        a.key("big", 9); a.put<uint32_t>(8); a.put<uint64_t>(1ull << 60);
        write_file(p, a.b);
        try { GGUFFile::open(p); CHECK(false); } catch (const FormatError& e) {
            CHECK(std::string(e.what()).find("'big'") != std::string::npos);
        }
        // tensor past the end: names the tensor
        auto b = good;
        b.resize(b.size() - 10);
        write_file(p, b);
        try { GGUFFile::open(p); CHECK(false); } catch (const FormatError& e) {
            CHECK(std::string(e.what()).find("'t.q8'") != std::string::npos);
            CHECK(std::string(e.what()).find("past the end") != std::string::npos);
        }
    }
    // missing file -> FileError with not_found
    try { GGUFFile::open("/nonexistent/dir/x.gguf"); CHECK(false); } catch (const FileError& e) {
        CHECK(e.not_found);
    }
    std::remove(p.c_str());
    return test_exit_code("test_gguf");
}
