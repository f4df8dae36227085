// MappedFile: the bytes of a model file, either a read-only private mapping (weights stay
// file-backed pages the kernel can drop and re-read) or a copy in anonymous memory
// (use_mmap=false). No MAP_POPULATE; madvise hints on request; mlock failure is reported, not
// thrown. Throws FileError naming the path when the file cannot be opened, read or mapped.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ggmlpy {

class MappedFile {
public:
    MappedFile(const std::string& path, bool use_mmap);
    // A page-aligned heap copy of `size` bytes at `data` (GGUFFile::from_bytes); `name` stands
    // in for the path in messages.
    MappedFile(const std::string& name, const void* data, size_t size);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    bool mapped() const { return mapped_; }
    int fd() const { return fd_; }  // the open file behind a mapping (-1 for a heap copy)
    const std::string& path() const { return path_; }

    // Locks [off, off+len) in RAM. Returns "" on success, else the reason (errno text and
    // RLIMIT_MEMLOCK); never throws.
    std::string lock(size_t off, size_t len);
    bool locked() const { return locked_len_ != 0; }
    // madvise over a byte range (page-rounded); ignored on a heap copy or on failure.
    void advise_willneed(size_t off, size_t len) const;
    void advise_random(size_t off, size_t len) const;
    void advise_sequential(size_t off, size_t len) const;

private:
    std::string path_;
    uint8_t* data_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
    int fd_ = -1;
    uint8_t* locked_addr_ = nullptr;
    size_t locked_len_ = 0;
};

}  // namespace ggmlpy
