// How much memory this process may still take, and a check run before every allocation whose size
// comes from file metadata or arguments (KV cache, compute buffers, logits). Allocating first and
// failing later is not an option on Linux: with overcommit the allocation "succeeds" and the OOM
// killer ends the process while the pages are zeroed, so the size is checked up front.
#pragma once
#include <cstdint>
#include <string>

namespace ggmlpy {

// Bytes available to this process now: the smallest of MemAvailable (/proc/meminfo), the cgroup
// v2 memory.max - memory.current, the cgroup v1 limit_in_bytes - usage_in_bytes and RLIMIT_AS
// minus the address space in use, where set.
// GGMLPY_MEM_LIMIT (bytes) replaces the whole measurement (tests, or to reserve memory for other
// work). UINT64_MAX when nothing can be read (not Linux).
uint64_t available_memory();

// The share of available_memory() one model may ask for: 7/8 of it, leaving room for the weights'
// page cache, Python and whatever else runs beside us.
uint64_t memory_budget();

// Throws MemoryLimitError when bytes > memory_budget(), with a message naming what was asked for,
// how many bytes, how many are available and `hint` (which argument to lower).
void check_memory(uint64_t bytes, const std::string& what, const std::string& hint);

// a * b and a + b, or UINT64_MAX on overflow (sizes from metadata may be absurd; a saturated size
// then fails check_memory instead of wrapping round to something small).
uint64_t mul_sat(uint64_t a, uint64_t b);
uint64_t add_sat(uint64_t a, uint64_t b);

}  // namespace ggmlpy
