// Replays inputs through a fuzz target's LLVMFuzzerTestOneInput without libFuzzer, so the seed
// corpus and every saved crashing input run as a plain C++ test with any compiler (and under
// ASan/UBSan in tests/run_sanitizers.sh). Arguments: files or folders (all files inside, sorted);
// a missing folder is skipped (a target may have no regressions yet).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
    namespace fs = std::filesystem;
    std::vector<fs::path> files;
    for (int i = 1; i < argc; ++i) {
        const fs::path p = argv[i];
        if (fs::is_directory(p)) {
            for (const auto& e : fs::directory_iterator(p))
                if (e.is_regular_file()) files.push_back(e.path());
        } else if (fs::is_regular_file(p)) {
            files.push_back(p);
        }
    }
    if (files.empty()) {  // a moved or empty corpus must not pass silently
        std::fprintf(stderr, "replay: no input files in the %d paths given\n", argc - 1);
        return 1;
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
        std::ifstream in(f, std::ios::binary);
        const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::printf("%s (%zu bytes)\n", f.c_str(), bytes.size());
        std::fflush(stdout);  // the last name printed is the input that crashed
        LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    }
    std::printf("replayed %zu inputs: ok\n", files.size());
    return 0;
}
