// Counts calls into the system allocator made by code linked into the
// benchmark (bench bodies and the static bufpool library), through the
// linker's --wrap. Calls made inside shared libraries are not seen.
// The count is per thread (a plain thread-local add, so that counting does
// not slow the malloc being measured).
#pragma once
#include <cstdint>

uint64_t malloc_calls();
