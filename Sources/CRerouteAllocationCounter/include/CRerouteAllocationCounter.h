#ifndef REROUTE_ALLOCATION_COUNTER_H
#define REROUTE_ALLOCATION_COUNTER_H

/// Heap-allocation counting for `reroute bench` / `reroute time` and the decoder's tests.
///
/// On dynamic glibc without a sanitizer, this target defines malloc, calloc, realloc,
/// memalign, valloc, pvalloc, posix_memalign, aligned_alloc (counted) and free, each
/// forwarding to glibc's own (`__libc_malloc`, ...). Linked into an executable, the dynamic
/// linker binds every shared library's calls (the Swift runtime, Foundation, OpenBLAS,
/// libhdf5) to these, so those calls of the whole process pass through one counter. Counting
/// costs one relaxed atomic load per call while off. Not compatible with an allocator put
/// in front by LD_PRELOAD (jemalloc, tcmalloc). Elsewhere nothing is replaced and every
/// count is 0.

/// Starts counting from zero.
void reroute_allocations_start(void);
/// Stops counting; returns the allocations counted since the start (realloc counts as one).
long reroute_allocations_stop(void);

/// Starts counting, from zero, the allocations made by the calling thread only.
void reroute_thread_allocations_start(void);
/// Stops the calling thread's count and returns it.
long reroute_thread_allocations_stop(void);

#endif
