// Model::load: opens the GGUF file, reads general.architecture and hands the file to that
// architecture's factory. Adding an architecture = one file with the three hooks + one row here.
#include <utility>

#include "arch/arch.h"
#include "ggmlpy/error.h"
#include "ggmlpy/memory_limit.h"
#include <sys/stat.h>

namespace ggmlpy {

namespace {
const std::vector<std::pair<std::string, ArchFactory>>& registry() {
    static const std::vector<std::pair<std::string, ArchFactory>> r = {
        {"llama", make_llama_model},
        {"gptj", make_gptj_model},
    };
    return r;
}
}  // namespace

std::vector<std::string> supported_architectures() {
    std::vector<std::string> out;
    for (const auto& e : registry()) out.push_back(e.first);
    return out;
}

std::unique_ptr<Model> Model::load(const std::string& path, const ModelParams& params) {
    GGUFOpenOptions opt;
    opt.use_mmap = params.use_mmap;
    opt.use_mlock = false;  // the memory plan locks (DecoderModel::plan_memory)
    struct stat st;
    if (!params.use_mmap && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode))
        check_memory((uint64_t)st.st_size, path + " read into memory (use_mmap=False)",
                     "map it instead (use_mmap=True, the default: weights that do not fit are streamed)");
    std::unique_ptr<GGUFFile> f = GGUFFile::open(path, opt);
    const std::string arch = f->require_string("general.architecture");
    for (const auto& e : registry()) {
        if (e.first != arch) continue;
        std::unique_ptr<DecoderModel> m = e.second(std::move(f), params);
        m->init();
        return m;
    }
    std::string list;
    for (const auto& n : supported_architectures()) list += (list.empty() ? "" : ", ") + n;
    throw FormatError(path + ": unknown architecture '" + arch + "' (key general.architecture; supported: " +
                      list + ")");
}

}  // namespace ggmlpy
