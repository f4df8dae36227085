// MappedFile: read-only private mapping of a model file, or an aligned heap copy of it.
// The mapping is MAP_PRIVATE + PROT_READ: pages stay file-backed (counted in RssFile, not
// RssAnon) and are faulted in lazily by the first matmul that touches them.
#include "io/mmap.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggmlpy/error.h"

namespace ggmlpy {

namespace {
size_t page_size() {
    static const size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}
// Round [off, off+len) outward to whole pages inside [0, size).
bool page_range(const uint8_t* base, size_t size, size_t off, size_t len, uint8_t** p, size_t* n) {
    if (off >= size || len == 0) return false;
    if (len > size - off) len = size - off;
    const size_t ps = page_size();
    uintptr_t a = (uintptr_t)(base + off) & ~(uintptr_t)(ps - 1);
    uintptr_t e = (uintptr_t)(base + off + len);
    *p = (uint8_t*)a;
    *n = (size_t)(e - a);
    return true;
}
struct Fd {
    int fd = -1;
    ~Fd() { if (fd >= 0) ::close(fd); }
};
}  // namespace

MappedFile::MappedFile(const std::string& path, bool use_mmap) : path_(path) {
    Fd f;
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f.fd < 0) {
        int e = errno;
        throw FileError(path + ": cannot open: " + std::strerror(e), e == ENOENT || e == ENOTDIR);
    }
    struct stat st;
    if (fstat(f.fd, &st) != 0) throw FileError(path + ": cannot stat: " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) throw FileError(path + ": is a directory, expected a model file");
    if (!S_ISREG(st.st_mode)) throw FileError(path + ": not a regular file");
    size_ = (size_t)st.st_size;
    if (size_ == 0) return;  // an empty file: the parser reports it as a FormatError

    if (use_mmap) {
        void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, f.fd, 0);
        if (p == MAP_FAILED) throw FileError(path + ": mmap failed: " + std::strerror(errno));
        data_ = (uint8_t*)p;
        mapped_ = true;
        fd_ = f.fd;  // kept open: weight streaming drops pages from the page cache through it
        f.fd = -1;
        return;
    }
    // Heap copy, page aligned so tensor data keeps the file's alignment guarantees.
    void* p = nullptr;
    if (posix_memalign(&p, page_size(), size_) != 0 || !p)
        throw FileError(path + ": cannot allocate " + std::to_string(size_) + " bytes to read the file");
    data_ = (uint8_t*)p;
    size_t done = 0;
    while (done < size_) {
        ssize_t r = ::pread(f.fd, data_ + done, size_ - done, (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            std::free(data_);
            data_ = nullptr;
            throw FileError(path + ": read failed at byte " + std::to_string(done) + ": " +
                            (r == 0 ? "unexpected end of file" : std::strerror(e)));
        }
        done += (size_t)r;
    }
}

MappedFile::MappedFile(const std::string& name, const void* data, size_t size) : path_(name), size_(size) {
    if (size_ == 0) return;
    void* p = nullptr;
    if (posix_memalign(&p, page_size(), size_) != 0 || !p)
        throw FileError(name + ": cannot allocate " + std::to_string(size_) + " bytes");
    std::memcpy(p, data, size_);
    data_ = (uint8_t*)p;
}

MappedFile::~MappedFile() {
    if (locked_len_) munlock(locked_addr_, locked_len_);
    if (!data_) return;
    if (mapped_) munmap(data_, size_);
    else std::free(data_);
    if (fd_ >= 0) ::close(fd_);
}

std::string MappedFile::lock(size_t off, size_t len) {
    uint8_t* p;
    size_t n;
    if (!page_range(data_, size_, off, len, &p, &n)) return "";
    if (mlock(p, n) == 0) {
        locked_addr_ = p;
        locked_len_ = n;
        return "";
    }
    int e = errno;
    std::string msg = path_ + ": mlock of " + std::to_string(n) + " bytes failed: " + std::strerror(e);
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        msg += " (RLIMIT_MEMLOCK = ";
        msg += rl.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : std::to_string(rl.rlim_cur) + " bytes";
        msg += "; raise it with `ulimit -l`)";
    }
    return msg;
}

void MappedFile::advise_willneed(size_t off, size_t len) const {
    uint8_t* p;
    size_t n;
    if (mapped_ && page_range(data_, size_, off, len, &p, &n)) madvise(p, n, MADV_WILLNEED);
}
void MappedFile::advise_random(size_t off, size_t len) const {
    uint8_t* p;
    size_t n;
    if (mapped_ && page_range(data_, size_, off, len, &p, &n)) madvise(p, n, MADV_RANDOM);
}
void MappedFile::advise_sequential(size_t off, size_t len) const {
    uint8_t* p;
    size_t n;
    if (mapped_ && page_range(data_, size_, off, len, &p, &n)) madvise(p, n, MADV_SEQUENTIAL);
}

}  // namespace ggmlpy
